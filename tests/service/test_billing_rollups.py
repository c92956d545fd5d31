"""The built-in meters' rollups answer ``QueryUsage`` as the events themselves do.

Events of a built-in meter are ingested through the real billing server (as the agent
service sends them, duplicates included); the same query is asked once as the rollups
answer it (grouped by model) and once as only the events can (naming every subject),
in UTC and in a zone 45 minutes off the hour. (They differ only for events recorded
more than the late-event grace after their window ended, which the rollups count.)
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from services.billing import rollups
from services.kit.usage import meter_event, to_messages
from tests.conftest import Mesh
from tests.service.helpers import new_tenant

METER = "model_input_tokens"
#: Nine days before today (UTC): recent enough that every event counts in its window (the
#: built-in meters' late-event grace is 35 days).
START = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(0), tzinfo=dt.UTC) - dt.timedelta(days=9)


def _stamp(instant: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def test_a_bucket_is_the_quarter_hour_an_instant_is_in() -> None:
    assert rollups.bucket_of(dt.datetime(2026, 10, 1, 18, 29, 59, 999, tzinfo=dt.UTC)) == dt.datetime(
        2026, 10, 1, 18, 15, tzinfo=dt.UTC
    )
    kathmandu = dt.timezone(dt.timedelta(hours=5, minutes=45))
    assert rollups.bucket_of(dt.datetime(2026, 10, 2, 0, 0, tzinfo=kathmandu)) == dt.datetime(
        2026, 10, 1, 18, 15, tzinfo=dt.UTC
    )


async def test_rollups_answer_as_the_events_do(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    subjects = [f"{tenant.name}/agents/a/runs/r{i}" for i in range(3)]
    rows = [
        meter_event(
            tenant.id,
            "//agent.orchestrall.dev/test",
            f"e-{i}",
            METER,
            10 + i,
            subjects[i % 3],
            START + dt.timedelta(minutes=37 * i),
            {"model": ("small", "large", "")[i % 3], "agent": f"{tenant.name}/agents/a"},
        )
        for i in range(300)
    ]
    async with mesh.channel("billing", identity="agent") as channel:
        agent = pb_grpc.BillingServiceStub(channel)
        await agent.IngestUsageEvents(pb.IngestUsageEventsRequest(events=to_messages(rows[:200])))
        await agent.IngestUsageEvents(pb.IngestUsageEventsRequest(events=to_messages(rows[100:])))  # repeats
    async with mesh.channel("billing") as channel:
        billing = pb_grpc.BillingServiceStub(channel)
        for zone, start in (("UTC", START), ("Asia/Kathmandu", START - dt.timedelta(hours=5, minutes=45))):
            asked = {
                "name": f"{tenant.name}/meters/{METER}",
                "start_time": _stamp(start),
                "end_time": _stamp(start + dt.timedelta(days=9)),
                "window_size": pb.QueryUsageRequest.WINDOW_SIZE_DAY,
                "time_zone": zone,
                "group_by": ["model"],
            }
            rolled = await billing.QueryUsage(pb.QueryUsageRequest(**asked), metadata=tenant.metadata)
            raw = await billing.QueryUsage(
                pb.QueryUsageRequest(**asked, subjects=subjects), metadata=tenant.metadata
            )
            assert rolled == raw and len(rolled.windows) > 9, zone
            assert sum(w.value for w in rolled.windows) == sum(10 + i for i in range(300))
            assert {w.group_by.get("model", "") for w in rolled.windows} == {"small", "large", ""}
