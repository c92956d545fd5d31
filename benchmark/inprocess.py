"""What benchmarks that start the services in their own process share: certificates, channels, a tenant."""

from __future__ import annotations

from pathlib import Path

import grpc

from orchestrall.auth.v1 import auth_service_pb2 as auth_pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as auth_grpc
from orchestrall.auth.v1 import resources_pb2 as auth_res
from services.kit import mtls
from services.kit.config import SERVICES
from services.kit.server import RunningServer

TRUST_DOMAIN = "orchestrall.local"


def workload_certificates(tls_dir: Path) -> None:
    """Makes a CA in ``tls_dir`` and a certificate for each service and the gateway."""
    mtls.ensure_ca(tls_dir, TRUST_DOMAIN)
    for name in (*SERVICES, "gateway"):
        mtls.issue_workload_cert(tls_dir, name, TRUST_DOMAIN, "orchestrall")


def channel(servers: dict[str, RunningServer], tls_dir: Path, service: str) -> grpc.aio.Channel:
    """An mTLS channel to ``service``, presenting the gateway's certificate."""
    return grpc.aio.secure_channel(
        f"127.0.0.1:{servers[service].port}",
        mtls.channel_credentials(mtls.TlsFiles.of(tls_dir, "gateway")),
        options=[("grpc.ssl_target_name_override", service)],
    )


async def tenant_metadata(
    servers: dict[str, RunningServer], tls_dir: Path, tenant_id: str
) -> tuple[tuple[str, str]]:
    """Signs up ``tenant_id``; returns call metadata with its admin's bearer token."""
    async with channel(servers, tls_dir, "auth") as auth_channel:
        auth = auth_grpc.AuthServiceStub(auth_channel)
        created = await auth.CreateTenant(
            auth_pb.CreateTenantRequest(tenant_id=tenant_id, tenant=auth_res.Tenant(display_name=tenant_id))
        )
        token = await auth.IssueToken(
            auth_pb.IssueTokenRequest(grant_type="client_credentials", client_secret=created.api_key_secret)
        )
    return (("authorization", f"Bearer {token.access_token}"),)
