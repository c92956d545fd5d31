"""Calls to peer services over mutual TLS.

Channels are made once per peer and reused. Every call gets the configured
deadline; UNAVAILABLE is retried by gRPC's own retry policy (gRFC A6), which
is safe because every retried write in the mesh carries an idempotency key.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import grpc

from services.kit.auth import TENANT_METADATA_KEY
from services.kit.config import MeshSettings
from services.kit.mtls import TlsFiles, channel_credentials

_RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
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


S = TypeVar("S")


class MeshClients:
    """One mTLS channel and one stub per peer service, presenting this workload's certificate.

    Args:
        settings: Peer addresses, TLS folder and call deadline.
        workload: This workload's name, whose certificate is presented.
    """

    def __init__(self, settings: MeshSettings, workload: str) -> None:
        self._settings = settings
        self._credentials = channel_credentials(TlsFiles.of(settings.tls_dir, workload))
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[type[Any], str], Any] = {}
        self.timeout = settings.call_timeout_seconds

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to ``service``; its certificate must carry DNS name ``service``."""
        if service not in self._channels:
            self._channels[service] = grpc.aio.secure_channel(
                self._settings.address_of(service),
                self._credentials,
                options=[
                    ("grpc.ssl_target_name_override", service),
                    ("grpc.service_config", _RETRY_SERVICE_CONFIG),
                    ("grpc.enable_retries", 1),
                ],
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
