"""Billing service: idempotent, all-or-nothing ingestion; summaries; entitlements."""

from __future__ import annotations

import grpc
import pytest

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from tests.conftest import Mesh
from tests.service.helpers import error_info, field_violations, new_tenant


def event(tenant: str, event_id: str, meter: str = "agent_runs", quantity: float = 1) -> res.UsageEvent:
    return res.UsageEvent(id=event_id, source="//test", tenant=tenant, meter=meter, quantity=quantity)


async def test_ingestion_is_idempotent_and_all_or_nothing(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("billing", identity="agent") as channel:
        stub = pb_grpc.BillingServiceStub(channel)
        batch = [event(tenant.name, "e1"), event(tenant.name, "e2", "model_input_tokens", 120)]
        first = await stub.IngestUsageEvents(pb.IngestUsageEventsRequest(events=batch))
        again = await stub.IngestUsageEvents(pb.IngestUsageEventsRequest(events=batch))
        assert (first.accepted_count, first.duplicate_count) == (2, 0)
        assert (again.accepted_count, again.duplicate_count) == (0, 2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IngestUsageEvents(
                pb.IngestUsageEventsRequest(
                    events=[
                        event(tenant.name, "e3"),
                        event(tenant.name, "e4", "gpu_hours"),
                        event(tenant.name, "e5", quantity=-1),
                    ]
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(caught.value)) == {"events[1].meter", "events[2].quantity"}
    async with mesh.channel("billing") as channel:
        summary = await pb_grpc.BillingServiceStub(channel).GetUsageSummary(
            pb.GetUsageSummaryRequest(name=f"{tenant.name}/usageSummary"), metadata=tenant.metadata
        )
    meters = {m.meter: (m.quantity, m.event_count) for m in summary.meters}
    assert meters["agent_runs"] == (1, 1), "e3 of the rejected batch must not be recorded"
    assert meters["model_input_tokens"] == (120, 1)


async def test_entitlement_stops_at_the_plan_limit(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("billing", identity="agent") as channel:
        stub = pb_grpc.BillingServiceStub(channel)
        check = pb.CheckEntitlementRequest(tenant=tenant.name, meter="agent_runs", quantity=1)
        before = await stub.CheckEntitlement(check)
        assert before.allowed and before.remaining == before.limit > 0
        await stub.IngestUsageEvents(
            pb.IngestUsageEventsRequest(events=[event(tenant.name, "bulk", quantity=before.limit)])
        )
        after = await stub.CheckEntitlement(check)
        assert not after.allowed and after.remaining == 0


async def test_one_entitlement_check_answers_for_every_meter_a_run_spends(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("billing", identity="agent") as channel:
        stub = pb_grpc.BillingServiceStub(channel)
        quantities = [
            pb.MeterQuantity(meter="agent_runs", quantity=1),
            pb.MeterQuantity(meter="model_output_tokens", quantity=256),
        ]
        answer = await stub.CheckEntitlement(
            pb.CheckEntitlementRequest(tenant=tenant.name, quantities=quantities)
        )
        assert answer.allowed
        assert [(m.meter, m.allowed) for m in answer.meters] == [
            ("agent_runs", True),
            ("model_output_tokens", True),
        ]
        limit = answer.meters[1].limit
        await stub.IngestUsageEvents(
            pb.IngestUsageEventsRequest(
                events=[event(tenant.name, "spent", "model_output_tokens", quantity=limit - 100)]
            )
        )
        answer = await stub.CheckEntitlement(
            pb.CheckEntitlementRequest(tenant=tenant.name, quantities=quantities)
        )
        assert not answer.allowed
        assert [(m.meter, m.allowed, m.remaining) for m in answer.meters] == [
            ("agent_runs", True, answer.meters[0].limit),
            ("model_output_tokens", False, 100),
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CheckEntitlement(
                pb.CheckEntitlementRequest(
                    tenant=tenant.name,
                    quantities=[
                        pb.MeterQuantity(meter="agent_runs", quantity=1),
                        pb.MeterQuantity(meter="agent_runs", quantity=-1),
                        pb.MeterQuantity(meter="gpu_hours", quantity=1),
                    ],
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == [
            "quantities[1].meter",
            "quantities[1].quantity",
            "quantities[2].meter",
        ]
        assert error_info(caught.value).reason == "UNKNOWN_METER"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CheckEntitlement(
                pb.CheckEntitlementRequest(
                    tenant=tenant.name,
                    quantities=[pb.MeterQuantity(meter="agent_runs", quantity=1)] * 2,
                )
            )
        assert field_violations(caught.value) == ["quantities[1].meter"]
        assert error_info(caught.value).reason == "INVALID_ARGUMENT"  # known, but named twice
