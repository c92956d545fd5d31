"""Behind Istio's sidecar (ORCHESTRALL_MESH_TLS=istio): plaintext, the caller named by its header.

A second billing replica runs in istio mode on the mesh's database; it admits an internal RPC
only for the caller its own sidecar's x-forwarded-client-cert element names.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import grpc
import pytest

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from services.kit.clients import MeshClients
from services.kit.mtls import spiffe_id
from services.kit.server import RunningServer, start
from services.kit.sidecar import XFCC_HEADER
from tests.conftest import Mesh
from tests.service.helpers import error_info, new_tenant

TRUST_DOMAIN, NAMESPACE = "orchestrall.local", "orchestrall"
BILLING = spiffe_id(TRUST_DOMAIN, NAMESPACE, "billing")


def element(caller: str, by: str = BILLING) -> str:
    """The element a sidecar appends for a peer with ``caller``'s certificate."""
    return f'By={by};Hash=9b2c;Subject="";URI={spiffe_id(TRUST_DOMAIN, NAMESPACE, caller)}'


@pytest.fixture
async def billing(mesh: Mesh) -> AsyncIterator[RunningServer]:
    settings = mesh.config.settings("billing").model_copy(
        update={"listen": "127.0.0.1:0", "mesh_tls": "istio", "metrics_listen": None}
    )
    build = importlib.import_module("services.billing.server").build
    running = await start(*(await build(settings)))
    yield running
    await running.stop(0)


async def test_an_internal_rpc_needs_the_sidecars_word_for_an_allowed_caller(
    mesh: Mesh, billing: RunningServer
) -> None:
    tenant = await new_tenant(mesh)
    request = pb.CheckEntitlementRequest(tenant=tenant.name, meter="agent_runs", quantity=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{billing.port}") as channel:
        stub = pb_grpc.BillingServiceStub(channel)
        answer = await stub.CheckEntitlement(request, timeout=5, metadata=[(XFCC_HEADER, element("agent"))])
        assert answer.allowed
        refused = {
            "no header": [],
            "a token is no service identity": list(tenant.metadata),
            "a caller the table does not allow": [(XFCC_HEADER, element("gateway"))],
            "another proxy's element": [
                (XFCC_HEADER, element("agent", by=spiffe_id(TRUST_DOMAIN, NAMESPACE, "flag")))
            ],
            "a forged element before the sidecar's": [
                (XFCC_HEADER, f"{element('agent')},{element('gateway')}")
            ],
        }
        for case, metadata in refused.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CheckEntitlement(request, timeout=5, metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, case
            assert error_info(caught.value).reason == "SERVICE_NOT_ALLOWED", case


async def test_clients_behind_the_sidecar_dial_plaintext(mesh: Mesh, billing: RunningServer) -> None:
    settings = mesh.config.settings("agent").model_copy(
        update={"mesh_tls": "istio", "addresses": {"billing": f"127.0.0.1:{billing.port}"}}
    )
    clients = MeshClients(settings, "agent")
    tenant = await new_tenant(mesh)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await clients.stub(pb_grpc.BillingServiceStub, "billing").CheckEntitlement(
                pb.CheckEntitlementRequest(tenant=tenant.name, meter="agent_runs", quantity=1), timeout=5
            )
    finally:
        await clients.close()
    # The service answered (no sidecar here to name the caller), over plaintext.
    assert error_info(caught.value).reason == "SERVICE_NOT_ALLOWED"
    assert billing.guard.calls["/orchestrall.billing.v1.BillingService/CheckEntitlement"] == 1
