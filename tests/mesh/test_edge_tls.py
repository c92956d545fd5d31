"""The gateway terminates TLS at the edge (``orchestrall up --tls``): 1.2 and 1.3, HTTP/2 by ALPN.

A stack of its own serves the gateway with a certificate from the local CA;
clients that trust the CA reach it over TLS, REST and native gRPC alike, and
older protocol versions are refused.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import grpc
import httpx
import pytest

from services.cli.stack import Stack
from tests.conftest import Backend
from tests.mesh.conftest import own_stack
from tests.mesh.test_access_gateway import sign_up

#: On SQLite: TLS at the edge does not depend on the store, and its stack starts in a third of the time.
pytestmark = [pytest.mark.mesh, pytest.mark.backends("sqlite")]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, stack: Stack, backend: Backend) -> Iterator[Stack]:
    with own_stack(tmp_path_factory, stack, backend, "edge", edge_tls=True) as running:
        yield running


def handshake(edge: Stack, version: ssl.TLSVersion, alpn: list[str]) -> tuple[str | None, str | None]:
    """Connects with exactly TLS ``version``; returns the negotiated version and ALPN protocol."""
    context = ssl.create_default_context(cafile=str(edge.config.tls_dir / "ca.pem"))
    context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", edge.config.http_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version(), tls.selected_alpn_protocol()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_2_and_1_3_with_http2_by_alpn_and_nothing_older(edge: Stack) -> None:
    assert handshake(edge, ssl.TLSVersion.TLSv1_3, ["h2", "http/1.1"]) == ("TLSv1.3", "h2")
    assert handshake(edge, ssl.TLSVersion.TLSv1_2, ["http/1.1"]) == ("TLSv1.2", "http/1.1")
    with pytest.raises(ssl.SSLError):
        handshake(edge, ssl.TLSVersion.TLSv1_1, ["http/1.1"])


def test_rest_and_grpc_work_over_tls(edge: Stack) -> None:
    assert edge.config.gateway_url.startswith("https://localhost:")
    trusted = ssl.create_default_context(cafile=str(edge.config.tls_dir / "ca.pem"))
    with httpx.Client(base_url=edge.config.gateway_url, verify=trusted) as http:
        owner = sign_up(http, "tls")  # token issuing and the JWKS through the TLS listener
        listed = http.get(
            f"/v1/tenants/{owner.tenant}/agents", headers={"authorization": f"Bearer {owner.token}"}
        )
        assert listed.status_code == 200, listed.text
    credentials = grpc.ssl_channel_credentials((edge.config.tls_dir / "ca.pem").read_bytes())
    with grpc.secure_channel(f"localhost:{edge.config.http_port}", credentials) as channel:
        from orchestrall.agent.v1 import agent_service_pb2 as pb
        from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc

        answer = pb_grpc.AgentServiceStub(channel).ListAgents(
            pb.ListAgentsRequest(parent=f"tenants/{owner.tenant}"),
            metadata=[("authorization", f"Bearer {owner.token}")],
            timeout=10,
        )
    assert list(answer.agents) == []
