"""Meters as data and QueryUsage: standard methods, aggregations, windows in a time zone, late events.

Meters are managed with a tenant's admin token through the real billing server;
events are recorded by a billing replica on an injected clock (as the agent, the
caller the policy table names), so that their ingest times are known and late events
can be shown. Expected values are worked out by hand in each test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing.server import build
from services.kit import mtls
from services.kit.server import start
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant

Replica = Callable[[dt.datetime], AbstractAsyncContextManager[pb_grpc.BillingServiceStub]]
SUM, COUNT, UNIQUE, MAX, LATEST = (
    res.Meter.AGGREGATION_SUM,
    res.Meter.AGGREGATION_COUNT,
    res.Meter.AGGREGATION_UNIQUE_COUNT,
    res.Meter.AGGREGATION_MAX,
    res.Meter.AGGREGATION_LATEST,
)
DAY, HOUR = pb.QueryUsageRequest.WINDOW_SIZE_DAY, pb.QueryUsageRequest.WINDOW_SIZE_HOUR
TOKENS = "com.example.llm.tokens"
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def stamp(instant: dt.datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(instant)
    return value


def token_event(
    tenant: str, event_id: str, time: str, tokens: float | str, model: str, agent: str, **more: Any
) -> res.UsageEvent:
    data = struct_pb2.Struct()
    data.update({"tokens": tokens, "model": model, "agent": agent, **more})
    return res.UsageEvent(
        id=event_id,
        source="//llm-proxy",
        tenant=tenant,
        spec_version="1.0",
        type=TOKENS,
        subject=f"customers/{agent}",
        time=stamp(at(time)),
        data=data,
    )


@pytest.fixture
def replica(mesh: Mesh) -> Replica:
    """Starts a billing replica whose clock stands at a given instant, on the mesh's database."""

    @asynccontextmanager
    async def running(now: dt.datetime) -> AsyncIterator[pb_grpc.BillingServiceStub]:
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

    return running


@pytest.fixture
async def billing(mesh: Mesh) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    """The mesh's billing service, called as the gateway forwards a user's token."""
    async with mesh.channel("billing") as channel:
        yield pb_grpc.BillingServiceStub(channel)


def meter(aggregation: int, value: str = "$.tokens", grace_seconds: int | None = None) -> res.Meter:
    made = res.Meter(
        event_type=TOKENS,
        aggregation=aggregation,
        value_property=value,
        group_by={"model": "$.model", "agent": "$.agent"},
        unit="{token}",
    )
    if grace_seconds is not None:
        made.late_event_grace.CopyFrom(duration_pb2.Duration(seconds=grace_seconds))
    return made


async def create(
    billing: pb_grpc.BillingServiceStub, tenant: Tenant, meter_id: str, definition: res.Meter, **fields: Any
) -> res.Meter:
    request = pb.CreateMeterRequest(parent=tenant.name, meter_id=meter_id, meter=definition, **fields)
    return await billing.CreateMeter(request, metadata=tenant.metadata)


async def query(
    billing: pb_grpc.BillingServiceStub, tenant: Tenant, meter_id: str, start: str, end: str, **fields: Any
) -> list[tuple[str, str, float, str, dict[str, str]]]:
    request = pb.QueryUsageRequest(
        name=f"{tenant.name}/meters/{meter_id}",
        start_time=stamp(at(start)),
        end_time=stamp(at(end)),
        **fields,
    )
    answer = await billing.QueryUsage(request, metadata=tenant.metadata)
    return [
        (
            w.start_time.ToDatetime(UTC).isoformat(),
            w.end_time.ToDatetime(UTC).isoformat(),
            w.value,
            w.subject,
            dict(w.group_by),
        )
        for w in answer.windows
    ]


async def test_meters_are_created_listed_changed_and_deleted_beside_the_built_in_ones(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    made = await create(billing, tenant, "tokens", meter(SUM), request_id="r-1")
    assert (made.name, made.built_in, made.late_event_grace.seconds) == (
        f"{tenant.name}/meters/tokens",
        False,
        86400,
    )
    assert await create(billing, tenant, "tokens", meter(SUM), request_id="r-1") == made, "a retry"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(billing, tenant, "tokens", meter(COUNT, value=""))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await create(billing, tenant, "calls", meter(COUNT, value=""))

    pages, token = [], ""
    while True:
        page = await billing.ListMeters(
            pb.ListMetersRequest(parent=tenant.name, page_size=2, page_token=token), metadata=tenant.metadata
        )
        pages.append([m.name.rsplit("/", 1)[1] for m in page.meters])
        token = page.next_page_token
        if not token:
            break
    assert pages == [
        ["agent_runs", "model_calls"],
        ["model_input_tokens", "model_output_tokens"],
        ["tool_calls", "calls"],
        ["tokens"],
    ]

    runs = await billing.GetMeter(
        pb.GetMeterRequest(name=f"{tenant.name}/meters/agent_runs"), metadata=tenant.metadata
    )
    assert (runs.built_in, runs.event_type, runs.aggregation, runs.value_property, dict(runs.group_by)) == (
        True,
        "dev.orchestrall.usage.agent_runs",
        SUM,
        "$.quantity",
        {"agent": "$.agent", "model": "$.model", "principal": "$.principal"},
    )

    change = res.Meter(name=made.name, display_name="LLM tokens", group_by={"model": "$.model"})
    changed = await billing.UpdateMeter(
        pb.UpdateMeterRequest(
            meter=change, update_mask=field_mask_pb2.FieldMask(paths=["display_name", "group_by"])
        ),
        metadata=tenant.metadata,
    )
    assert (changed.display_name, dict(changed.group_by), changed.aggregation) == (
        "LLM tokens",
        {"model": "$.model"},
        SUM,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.UpdateMeter(
            pb.UpdateMeterRequest(meter=change, update_mask=field_mask_pb2.FieldMask(paths=["aggregation"])),
            metadata=tenant.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(caught.value) == [
        "update_mask"
    ]
    for call in (
        billing.UpdateMeter(pb.UpdateMeterRequest(meter=runs), metadata=tenant.metadata),
        billing.DeleteMeter(pb.DeleteMeterRequest(name=runs.name), metadata=tenant.metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(caught.value).reason == "BUILT_IN_METER"

    await billing.DeleteMeter(pb.DeleteMeterRequest(name=made.name), metadata=tenant.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.GetMeter(pb.GetMeterRequest(name=made.name), metadata=tenant.metadata)
    assert error_info(caught.value).reason == "METER_NOT_FOUND"


async def test_a_bad_meter_names_each_bad_field(mesh: Mesh, billing: pb_grpc.BillingServiceStub) -> None:
    tenant = await new_tenant(mesh)
    bad = res.Meter(
        aggregation=SUM,
        value_property="tokens",
        group_by={"subject": "$.who", "Model": "$.model", "agent": "$..agent"},
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(billing, tenant, "bad", bad)
    assert error_info(caught.value).reason == "INVALID_METER"
    assert field_violations(caught.value) == [
        "meter.event_type",
        "meter.value_property",
        'meter.group_by["Model"]',
        'meter.group_by["agent"]',
        'meter.group_by["subject"]',
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(
            billing, tenant, "bad", res.Meter(event_type=TOKENS, aggregation=COUNT, value_property="$.n")
        )
    assert field_violations(caught.value) == ["meter.value_property"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(billing, tenant, "bad", res.Meter(event_type=TOKENS))
    assert field_violations(caught.value) == ["meter.aggregation"]


#: Events around the start of summer time in Berlin (2026-03-29 02:00 CET becomes 03:00 CEST):
#: local days are [03-27 23:00Z, 03-28 23:00Z) of 24 hours and [03-28 23:00Z, 03-29 22:00Z) of 23.
BERLIN_DAYS = ("2026-03-28T00:00:00+01:00", "2026-03-30T00:00:00+02:00")


async def record_berlin_events(replica: Replica, tenant: Tenant, other: Tenant) -> None:
    events = [
        token_event(tenant.name, "t1", "2026-03-28T08:00:00Z", 100, "small", "planner"),
        token_event(tenant.name, "t2", "2026-03-28T22:59:59Z", 50, "large", "planner"),
        # 00:30 in Berlin on the 29th (23:30 on the 28th in UTC): the second local day.
        token_event(tenant.name, "t3", "2026-03-28T23:30:00Z", 30, "small", "writer"),
        token_event(tenant.name, "t4", "2026-03-29T12:00:00Z", 20, "small", "planner"),
        token_event(tenant.name, "t5", "2026-03-29T21:00:00Z", 7, "small", "planner"),
        token_event(tenant.name, "t6", "2026-03-29T21:30:00Z", "n/a", "small", "writer"),
        token_event(
            tenant.name, "t7", "2026-03-29T22:00:00Z", 1000, "small", "planner"
        ),  # the 30th in Berlin
        token_event(other.name, "t1", "2026-03-28T09:00:00Z", 999, "small", "planner"),
    ]
    async with replica(at("2026-03-29T22:30:00Z")) as agent_side:
        answer = await agent_side.IngestUsageEvents(pb.IngestUsageEventsRequest(events=events))
    assert answer.accepted_count == len(events)


async def test_usage_adds_up_per_local_day_grouped_and_filtered(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, replica: Replica
) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    for meter_id, aggregation, value in (
        ("sum", SUM, "$.tokens"),
        ("count", COUNT, ""),
        ("models", UNIQUE, "$.model"),
        ("max", MAX, "$.tokens"),
        ("latest", LATEST, "$.tokens"),
    ):
        await create(billing, tenant, meter_id, meter(aggregation, value))
    await create(billing, other, "sum", meter(SUM))
    await record_berlin_events(replica, tenant, other)
    day1 = ("2026-03-27T23:00:00+00:00", "2026-03-28T23:00:00+00:00")
    day2 = ("2026-03-28T23:00:00+00:00", "2026-03-29T22:00:00+00:00")
    berlin = {"window_size": DAY, "time_zone": "Europe/Berlin"}

    assert await query(billing, tenant, "sum", *BERLIN_DAYS, **berlin) == [
        (*day1, 150, "", {}),
        (*day2, 57, "", {}),
    ]
    assert await query(billing, tenant, "sum", *BERLIN_DAYS, **berlin, group_by=["model"]) == [
        (*day1, 50, "", {"model": "large"}),
        (*day1, 100, "", {"model": "small"}),
        (*day2, 57, "", {"model": "small"}),
    ]
    assert await query(
        billing,
        tenant,
        "sum",
        *BERLIN_DAYS,
        **berlin,
        group_by=["subject"],
        filter_group_by={"model": "small"},
    ) == [
        (*day1, 100, "customers/planner", {}),
        (*day2, 27, "customers/planner", {}),
        (*day2, 30, "customers/writer", {}),
    ]
    assert await query(billing, tenant, "sum", *BERLIN_DAYS, subjects=["customers/writer"]) == [
        ("2026-03-27T23:00:00+00:00", "2026-03-29T22:00:00+00:00", 30, "", {})
    ]
    assert await query(billing, tenant, "count", *BERLIN_DAYS, **berlin) == [
        (*day1, 2, "", {}),
        (*day2, 4, "", {}),
    ]
    assert await query(billing, tenant, "models", *BERLIN_DAYS, **berlin) == [
        (*day1, 2, "", {}),
        (*day2, 1, "", {}),
    ]
    assert await query(billing, tenant, "max", *BERLIN_DAYS, **berlin) == [
        (*day1, 100, "", {}),
        (*day2, 30, "", {}),
    ]
    assert await query(billing, tenant, "latest", *BERLIN_DAYS, **berlin, group_by=["agent"]) == [
        (*day1, 50, "", {"agent": "planner"}),
        (*day2, 7, "", {"agent": "planner"}),
        (*day2, 30, "", {"agent": "writer"}),
    ]
    # In UTC the same range is other days: t3 (23:30Z) belongs to the 28th.
    utc = await query(billing, tenant, "sum", "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z", window_size=DAY)
    assert [(start[:10], value) for start, _, value, _, _ in utc] == [
        ("2026-03-28", 180),
        ("2026-03-29", 1027),
    ]
    hours = await query(
        billing,
        tenant,
        "sum",
        "2026-03-29T00:00:00+01:00",
        "2026-03-29T05:00:00+02:00",
        window_size=HOUR,
        time_zone="Europe/Berlin",
    )
    assert hours == [("2026-03-28T23:00:00+00:00", "2026-03-29T00:00:00+00:00", 30, "", {})]
    assert await query(billing, other, "sum", *BERLIN_DAYS, **berlin) == [(*day1, 999, "", {})]


async def test_a_query_names_what_is_wrong_with_it(mesh: Mesh, billing: pb_grpc.BillingServiceStub) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    await create(billing, tenant, "sum", meter(SUM))
    cases = [
        (
            {"window_size": DAY, "time_zone": "Europe/Berlin"},
            "2026-03-28T00:00:00Z",
            "2026-03-30T00:00:00Z",
            ["start_time", "end_time"],
        ),
        ({"time_zone": "Mars/Olympus"}, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z", ["time_zone"]),
        ({}, "2026-03-30T00:00:00Z", "2026-03-28T00:00:00Z", ["end_time"]),
        (
            {"window_size": pb.QueryUsageRequest.WINDOW_SIZE_MINUTE},
            "2026-03-28T00:00:00Z",
            "2026-03-30T00:00:00Z",
            ["window_size"],
        ),
        (
            {"group_by": ["region", "subject"], "filter_group_by": {"subject": "x"}},
            "2026-03-28T00:00:00Z",
            "2026-03-29T00:00:00Z",
            ["group_by[0]", 'filter_group_by["subject"]'],
        ),
    ]
    for fields, since, until, named in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await query(billing, tenant, "sum", since, until, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert field_violations(caught.value) == named, fields
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query(billing, tenant, "nope", "2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z")
    assert error_info(caught.value).reason == "METER_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query(
            billing,
            Tenant(other.id, other.secret, tenant.token),
            "sum",
            "2026-03-28T00:00:00Z",
            "2026-03-29T00:00:00Z",
        )
    assert error_info(caught.value).reason == "TENANT_MISMATCH"


async def test_late_events_count_in_their_window_only_within_the_grace(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, replica: Replica
) -> None:
    tenant = await new_tenant(mesh)
    await create(billing, tenant, "sum", meter(SUM, grace_seconds=3600))
    hour = ("2026-03-10T10:00:00Z", "2026-03-10T11:00:00Z")
    on_time = token_event(tenant.name, "on-time", "2026-03-10T10:10:00Z", 1, "small", "planner")
    late = token_event(tenant.name, "late", "2026-03-10T10:20:00Z", 10, "small", "planner")
    too_late = token_event(tenant.name, "too-late", "2026-03-10T10:30:00Z", 100, "small", "planner")
    for ingest_time, event in (
        ("2026-03-10T10:15:00Z", on_time),
        ("2026-03-10T11:59:59Z", late),  # 59 min 59 s after the window ended
        ("2026-03-10T12:00:00Z", too_late),  # an hour after: no longer
    ):
        async with replica(at(ingest_time)) as agent_side:
            await agent_side.IngestUsageEvents(pb.IngestUsageEventsRequest(events=[event]))
    assert await query(billing, tenant, "sum", *hour, window_size=HOUR) == [
        (*(at(t).isoformat() for t in hour), 11, "", {})
    ]
    # A window of the whole day ends later, so its grace admits the event the hour did not.
    day = await query(billing, tenant, "sum", "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z", window_size=DAY)
    assert [value for _, _, value, _, _ in day] == [111]


async def test_the_built_in_meters_are_queried_like_any_other(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, replica: Replica
) -> None:
    tenant = await new_tenant(mesh)
    events = [
        res.UsageEvent(
            id=f"run-{i}",
            source="//agent",
            tenant=tenant.name,
            meter="agent_runs",
            quantity=1,
            time=stamp(at(time)),
        )
        for i, time in enumerate(["2026-04-01T09:00:00Z", "2026-04-01T15:00:00Z", "2026-04-02T09:00:00Z"])
    ]
    async with replica(at("2026-04-02T10:00:00Z")) as agent_side:
        await agent_side.IngestUsageEvents(pb.IngestUsageEventsRequest(events=events))
    days = await query(
        billing, tenant, "agent_runs", "2026-04-01T00:00:00Z", "2026-04-03T00:00:00Z", window_size=DAY
    )
    assert [(start[:10], value) for start, _, value, _, _ in days] == [("2026-04-01", 2), ("2026-04-02", 1)]
