"""Billing ingestion of CloudEvents over gRPC: attributes checked, duplicates refused while events are kept.

Calls go to real billing servers over mTLS as the agent (the caller the policy table
names). Deduplication past the 35 days the contract promises is shown with replicas
on an injected clock, on the mesh's database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing.server import build
from services.kit import mtls
from services.kit.server import start
from services.kit.timestamps import utcnow
from tests.conftest import Mesh
from tests.service.helpers import error_info, field_violations, new_tenant

Replica = Callable[[dt.datetime], AbstractAsyncContextManager[pb_grpc.BillingServiceStub]]


def cloud_event(
    tenant: str, event_id: str, type_: str, data: dict | None = None, **fields: object
) -> res.UsageEvent:
    payload = struct_pb2.Struct()
    payload.update(data or {})
    attributes: dict[str, object] = {"spec_version": "1.0", "type": type_, **fields}
    return res.UsageEvent(id=event_id, source="//erp.example.com", tenant=tenant, data=payload, **attributes)


async def used(mesh: Mesh, tenant_name: str, metadata: object) -> dict[str, tuple[float, int]]:
    async with mesh.channel("billing") as channel:
        summary = await pb_grpc.BillingServiceStub(channel).GetUsageSummary(
            pb.GetUsageSummaryRequest(name=f"{tenant_name}/usageSummary"), metadata=metadata
        )
    return {m.meter: (m.quantity, m.event_count) for m in summary.meters}


@pytest.fixture
async def billing(mesh: Mesh) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    async with mesh.channel("billing", identity="agent") as channel:
        yield pb_grpc.BillingServiceStub(channel)


@pytest.fixture
def replica(mesh: Mesh) -> Replica:
    """Starts a billing replica whose clock stands at a given instant, on the mesh's database."""

    @asynccontextmanager
    async def at(now: dt.datetime) -> AsyncIterator[pb_grpc.BillingServiceStub]:
        settings = mesh.config.settings("billing").model_copy(
            update={"tls_dir": mesh.tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
        )
        server = await start(*(await build(settings, clock=lambda: now)))
        credentials = mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "agent"))
        try:
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{server.port}",
                credentials,
                options=[("grpc.ssl_target_name_override", "billing")],
            ) as channel:
                yield pb_grpc.BillingServiceStub(channel)
        finally:
            await server.stop(0)

    return at


async def test_cloudevents_count_towards_their_meters_and_others_are_kept(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(utcnow())
    batch = [
        cloud_event(
            tenant.name, "c1", "dev.orchestrall.usage.model_input_tokens", {"quantity": 70}, time=when
        ),
        cloud_event(tenant.name, "c2", "com.example.api.call", {"path": "/orders", "quantity": "many"}),
        res.UsageEvent(
            id="c3", source="//agent", tenant=tenant.name, meter="model_input_tokens", quantity=30
        ),
        cloud_event(tenant.name, "c1", "dev.orchestrall.usage.model_input_tokens", {"quantity": 70}),
    ]
    answer = await billing.IngestUsageEvents(pb.IngestUsageEventsRequest(events=batch))
    assert (answer.accepted_count, answer.duplicate_count) == (3, 1)
    assert (await used(mesh, tenant.name, tenant.metadata))["model_input_tokens"] == (100, 2)
    again = await billing.IngestUsageEvents(pb.IngestUsageEventsRequest(events=batch[:3]))
    assert (again.accepted_count, again.duplicate_count) == (0, 3)


async def test_bad_cloudevents_are_named_per_attribute_and_nothing_is_recorded(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    runs = "dev.orchestrall.usage.agent_runs"
    batch = [
        cloud_event(tenant.name, "ok", runs, {"quantity": 1}),
        cloud_event(tenant.name, "v", runs, {"quantity": 1}, spec_version="0.3"),
        cloud_event(tenant.name, "q", runs, {"quantity": True}),
        cloud_event(tenant.name, "both", runs, {"quantity": 1}, meter="agent_runs"),
        cloud_event(tenant.name, "big", "com.example.blob", {"blob": "x" * 17_000}),
        res.UsageEvent(id="none", source="//agent", tenant=tenant.name),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.IngestUsageEvents(pb.IngestUsageEventsRequest(events=batch))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_USAGE_EVENTS"
    assert field_violations(caught.value) == [
        "events[1].spec_version",
        "events[2].data.quantity",
        "events[3].type",
        "events[4].data",
        "events[5].type",
    ]
    assert (await used(mesh, tenant.name, tenant.metadata))["agent_runs"] == (0, 0)


async def test_an_event_is_a_duplicate_35_days_and_a_year_after_it_was_recorded(
    mesh: Mesh, replica: Replica
) -> None:
    tenant = await new_tenant(mesh)
    start_time = utcnow()
    first = cloud_event(tenant.name, "kept-1", "com.example.api.call", {"path": "/a"})
    later = cloud_event(tenant.name, "kept-2", "com.example.api.call", {"path": "/b"})

    async def ingest(stub: pb_grpc.BillingServiceStub, event: res.UsageEvent) -> tuple[int, int]:
        answer = await stub.IngestUsageEvents(pb.IngestUsageEventsRequest(events=[event]))
        return answer.accepted_count, answer.duplicate_count

    async with replica(start_time) as billing:
        assert await ingest(billing, first) == (1, 0)
    async with replica(start_time + dt.timedelta(days=34, hours=23)) as billing:
        assert await ingest(billing, first) == (0, 1)
        assert await ingest(billing, later) == (1, 0)
    async with replica(start_time + dt.timedelta(days=35, minutes=1)) as billing:
        assert await ingest(billing, first) == (0, 1), "past the 35 days the contract promises"
    async with replica(start_time + dt.timedelta(days=366)) as billing:
        assert await ingest(billing, first) == (0, 1)
        assert await ingest(billing, later) == (0, 1)


async def test_concurrent_deliveries_of_one_batch_record_each_event_once(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, replica: Replica
) -> None:
    tenant = await new_tenant(mesh)
    batch = pb.IngestUsageEventsRequest(
        events=[
            cloud_event(
                tenant.name, f"burst-{i}", "dev.orchestrall.usage.model_output_tokens", {"quantity": i}
            )
            for i in range(1, 51)
        ]
    )
    async with replica(utcnow()) as other:
        answers = await asyncio.gather(*(stub.IngestUsageEvents(batch) for stub in [billing, other] * 4))
    assert sum(a.accepted_count for a in answers) == 50, "each event is recorded by one delivery only"
    assert all(a.accepted_count + a.duplicate_count == 50 for a in answers)
    assert (await used(mesh, tenant.name, tenant.metadata))["model_output_tokens"] == (sum(range(1, 51)), 50)
