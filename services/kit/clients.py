"""Calls to peer services over mutual TLS (the kit's own, or Istio's sidecar's).

Channels are made once per peer and reused. Every call gets the configured
deadline and rides out a peer that restarts: it waits for a ready channel
instead of failing at once (``waitForReady``), the channel reconnects within
:data:`MAX_RECONNECT_BACKOFF_MS`, and UNAVAILABLE is retried by gRPC's own retry
policy (gRFC A6), which is safe because every retried write in the mesh carries
an idempotency key. Nothing outlives the deadline: a peer that stays down fails
the call with DEADLINE_EXCEEDED or UNAVAILABLE when it passes. Behind Istio's sidecar
(``mesh_tls=istio``) channels are plaintext to it and the kit does not retry: the sidecar does,
with the same policy (deploy/ renders it), so retries do not multiply.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from services.kit.auth import TENANT_METADATA_KEY
from services.kit.config import MeshSettings
from services.kit.mtls import TlsFiles, channel_credentials
from services.kit.tracing import client_interceptors

#: Behind Istio's sidecar (``mesh_tls=istio``): the sidecar retries (deploy/ renders the same
#: policy into the VirtualServices), so the client only waits for a ready channel.
_SIDECAR_SERVICE_CONFIG = json.dumps({"methodConfig": [{"name": [{}], "waitForReady": True}]})
_RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "waitForReady": True,
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


#: Reconnect backoff to a peer that went away, in milliseconds (gRPC's defaults, 1 s growing
#: to 120 s, would leave a call waiting long after a restarted peer serves again).
INITIAL_RECONNECT_BACKOFF_MS = 100
MAX_RECONNECT_BACKOFF_MS = 1000

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_TRANSPORT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "the {} service could not be reached",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the {} service did not answer in time",
}

S = TypeVar("S")


def peer_failure(error: grpc.aio.AioRpcError, peer: str) -> tuple[str, str]:
    """Returns the reason and message of a failed peer call, fit to show a tenant.

    A peer's own errors carry a ``google.rpc.Status`` with an ``ErrorInfo``
    (:mod:`services.kit.errors`): its reason and message are kept. Anything else
    (the transport's errors, which name addresses and gRPC internals) becomes a
    fixed message, with the reason ``<PEER>_<CODE>`` (``AGENT_UNAVAILABLE``).

    Args:
        error: The failed call.
        peer: The peer service's name (``agent``).

    Returns:
        ``(reason, message)``.
    """
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, status.message
    template = _TRANSPORT_MESSAGES.get(error.code(), "the {} service failed")
    return f"{peer.upper()}_{error.code().name}", template.format(peer)


class MeshClients:
    """One mTLS channel and one stub per peer service, presenting this workload's certificate.

    Args:
        settings: Peer addresses, TLS folder and call deadline.
        workload: This workload's name, whose certificate is presented.
    """

    def __init__(self, settings: MeshSettings, workload: str) -> None:
        self._settings = settings
        self._credentials = (
            None
            if settings.mesh_tls == "istio"
            else channel_credentials(TlsFiles.of(settings.tls_dir, workload))
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[type[Any], str], Any] = {}
        self.timeout = settings.call_timeout_seconds

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to ``service``; its certificate must carry DNS name ``service``."""
        if service not in self._channels:
            address = self._settings.address_of(service)
            reconnect = [
                ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
                ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
            ]
            if self._credentials is None:  # plaintext to the Istio sidecar, which does mTLS and retries
                self._channels[service] = grpc.aio.insecure_channel(
                    address,
                    options=[
                        ("grpc.service_config", _SIDECAR_SERVICE_CONFIG),
                        ("grpc.enable_retries", 0),
                        *reconnect,
                    ],
                    interceptors=client_interceptors(),
                )
            else:
                self._channels[service] = grpc.aio.secure_channel(
                    address,
                    self._credentials,
                    options=[
                        ("grpc.ssl_target_name_override", service),
                        ("grpc.service_config", _RETRY_SERVICE_CONFIG),
                        ("grpc.enable_retries", 1),
                        *reconnect,
                    ],
                    interceptors=client_interceptors(),
                )
        return self._channels[service]

    def stub(self, stub_type: type[S], service: str) -> S:
        """Returns the stub of ``stub_type`` on the channel to ``service``, made on first use."""
        key = (stub_type, service)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = stub_type(self.channel(service))  # type: ignore[call-arg]
        return stub  # type: ignore[no-any-return]

    @staticmethod
    def for_tenant(tenant: str) -> tuple[tuple[str, str], ...]:
        """Call metadata that names the tenant a service acts for."""
        return ((TENANT_METADATA_KEY, tenant),)

    async def close(self) -> None:
        """Closes every channel."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
