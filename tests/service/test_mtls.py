"""Service-to-service trust: certificates of our CA only, and the policy table."""

from __future__ import annotations

import grpc
import pytest

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from tests.conftest import Mesh
from tests.service.helpers import error_info, new_tenant


async def test_a_caller_without_a_mesh_certificate_is_refused(mesh: Mesh) -> None:
    async with mesh.channel("billing", identity="stranger", tls_dir=mesh.tls_dir / "other-ca") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.BillingServiceStub(channel).CheckEntitlement(
                pb.CheckEntitlementRequest(tenant="tenants/x", meter="agent_runs", quantity=1), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_internal_rpcs_follow_the_policy_table(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    request = pb.CheckEntitlementRequest(tenant=tenant.name, meter="agent_runs", quantity=1)
    async with mesh.channel("billing", identity="agent") as channel:
        answer = await pb_grpc.BillingServiceStub(channel).CheckEntitlement(request, timeout=5)
        assert answer.allowed
    for identity in ("gateway", "workflow"):
        async with mesh.channel("billing", identity=identity) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.BillingServiceStub(channel).CheckEntitlement(
                    request, timeout=5, metadata=tenant.metadata
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_info(caught.value).reason == "SERVICE_NOT_ALLOWED"
