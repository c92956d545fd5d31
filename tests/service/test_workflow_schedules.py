"""Schedules against the real workflow service: the RPCs, firing through DBOS's scheduler, overlap policies.

Firing is tested with a six-field cron that fires every second (DBOS's scheduler
picks a new schedule up within its polling interval). The overlap policies are
tested on the fire steps and the fire workflow themselves, against the service's
database, with the previous run held in ``RUNNING`` by writing its row: no run
has to be made slow, and nothing waits for a clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import grpc
import pytest
from dbos import DBOS, WorkflowHandleAsync
from google.protobuf.duration_pb2 import Duration

from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as pb_grpc
from services.kit.db import Database, create_engine
from services.kit.timestamps import from_timestamp, utcnow
from services.workflow import schedules, store, trigger_store
from services.workflow.models import RunState
from services.workflow.store import RUNS
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant, one_step_workflow


@dataclasses.dataclass(frozen=True)
class Flow:
    """A tenant's one-step workflow and a stub of the workflow service."""

    tenant: Tenant
    workflow: str
    stub: pb_grpc.WorkflowServiceStub

    @property
    def workflow_id(self) -> str:
        return self.workflow.rsplit("/", 1)[1]


@pytest.fixture
async def flow(mesh: Mesh) -> AsyncIterator[Flow]:
    tenant = await new_tenant(mesh)
    workflow = await one_step_workflow(mesh, tenant, "nightly")
    async with mesh.channel("workflow") as channel:
        yield Flow(tenant, workflow, pb_grpc.WorkflowServiceStub(channel))


@pytest.fixture
async def workflow_db(mesh: Mesh) -> AsyncIterator[Database]:
    db = Database(create_engine(mesh.config.settings("workflow"), "workflow"))
    yield db
    await db.close()


async def _create(flow: Flow, schedule_id: str, **fields: object) -> res.Schedule:
    return await flow.stub.CreateSchedule(
        pb.CreateScheduleRequest(
            parent=flow.workflow, schedule_id=schedule_id, schedule=res.Schedule(**fields)
        ),
        metadata=flow.tenant.metadata,
    )


async def test_bad_schedules_name_each_bad_field(flow: Flow) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _create(flow, "Bad_ID", cron="61 * * * *", time_zone="Mars/Olympus_Mons")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"schedule_id", "schedule.cron", "schedule.time_zone"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _create(flow, "hourly", cron="@hourly")
    assert field_violations(caught.value) == ["schedule.cron"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flow.stub.CreateSchedule(
            pb.CreateScheduleRequest(
                parent=f"{flow.tenant.name}/workflows/missing", schedule=res.Schedule(cron="0 9 * * *")
            ),
            metadata=flow.tenant.metadata,
        )
    assert error_info(caught.value).reason == "WORKFLOW_NOT_FOUND"


async def _dbos_status(name: str) -> str | None:
    """The status of DBOS's schedule of that name (``ACTIVE``, ``PAUSED``), or None."""
    found = await DBOS.get_schedule_async(name)
    return None if found is None else str(found["status"])


async def test_a_schedule_is_read_paused_resumed_and_deleted(flow: Flow) -> None:
    created = await _create(
        flow,
        "morning",
        cron="0 9 * * *",
        time_zone="Europe/Amsterdam",
        overlap_policy=res.OVERLAP_POLICY_BUFFER_ONE,
        catchup_window=Duration(seconds=3600),
    )
    assert created.name == f"{flow.workflow}/schedules/morning"
    got = await flow.stub.GetSchedule(pb.GetScheduleRequest(name=created.name), metadata=flow.tenant.metadata)
    assert (got.cron, got.time_zone, got.overlap_policy, got.catchup_window.seconds, got.paused) == (
        "0 9 * * *",
        "Europe/Amsterdam",
        res.OVERLAP_POLICY_BUFFER_ONE,
        3600,
        False,
    )
    fire_times = [from_timestamp(t) for t in got.next_fire_times]
    assert len(fire_times) == 5 and fire_times == sorted(fire_times) and fire_times[0] > utcnow()
    assert all(t.astimezone(ZoneInfo("Europe/Amsterdam")).hour == 9 for t in fire_times)
    listed = await flow.stub.ListSchedules(
        pb.ListSchedulesRequest(parent=flow.workflow), metadata=flow.tenant.metadata
    )
    assert [s.name for s in listed.schedules] == [created.name]
    paused = await flow.stub.PauseSchedule(
        pb.PauseScheduleRequest(name=created.name), metadata=flow.tenant.metadata
    )
    assert paused.paused and not paused.next_fire_times
    assert await _dbos_status(created.name) == "PAUSED"
    resumed = await flow.stub.ResumeSchedule(
        pb.ResumeScheduleRequest(name=created.name), metadata=flow.tenant.metadata
    )
    assert not resumed.paused and len(resumed.next_fire_times) == 5
    assert await _dbos_status(created.name) == "ACTIVE"
    await flow.stub.DeleteSchedule(pb.DeleteScheduleRequest(name=created.name), metadata=flow.tenant.metadata)
    assert await DBOS.get_schedule_async(created.name) is None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await flow.stub.GetSchedule(pb.GetScheduleRequest(name=created.name), metadata=flow.tenant.metadata)
    assert error_info(caught.value).reason == "SCHEDULE_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _create(flow, "again", cron="0 9 * * *")
        await _create(flow, "again", cron="0 10 * * *")
    assert error_info(caught.value).reason == "SCHEDULE_ALREADY_EXISTS"


async def _scheduled_runs(flow: Flow) -> list[res.WorkflowRun]:
    listed = await flow.stub.ListWorkflowRuns(
        pb.ListWorkflowRunsRequest(parent=flow.workflow, page_size=1000), metadata=flow.tenant.metadata
    )
    return [run for run in listed.workflow_runs if "scheduled_time" in run.input]


async def test_a_six_field_cron_fires_every_second(flow: Flow) -> None:
    schedule = await _create(
        flow, "every-second", cron="* * * * * *", overlap_policy=res.OVERLAP_POLICY_ALLOW_ALL
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(runs := await _scheduled_runs(flow)) < 3:
        assert loop.time() < deadline, "the schedule did not fire three times in 30 s"
        await asyncio.sleep(0.1)
    paused = await flow.stub.PauseSchedule(
        pb.PauseScheduleRequest(name=schedule.name), metadata=flow.tenant.metadata
    )
    fire_times = sorted(dt.datetime.fromisoformat(json.loads(run.input)["scheduled_time"]) for run in runs)
    assert all(t.microsecond == 0 and t.tzinfo is not None for t in fire_times)
    assert len(set(fire_times)) == len(fire_times), "one run per fire time"
    assert {run.trigger for run in runs} == {schedule.name}
    # A run starts before its schedule records it: wait for the record of the last one seen.
    while True:
        got = await flow.stub.GetSchedule(
            pb.GetScheduleRequest(name=schedule.name), metadata=flow.tenant.metadata
        )
        if from_timestamp(got.last_fire_time) >= fire_times[-1]:
            break
        assert loop.time() < deadline, f"last_fire_time stayed {from_timestamp(got.last_fire_time)}"
        await asyncio.sleep(0.05)
    assert paused.paused
    await flow.stub.DeleteSchedule(
        pb.DeleteScheduleRequest(name=schedule.name), metadata=flow.tenant.metadata
    )


async def _hold_previous_run(db: Database, flow: Flow, schedule_id: str) -> str:
    """Makes a RUNNING run (no executor runs it) the schedule's previous run; returns its ID."""
    run = dataclasses.replace(
        store.new_run(flow.tenant.id, flow.workflow_id, "held", None, "api"),
        id=f"held-{schedule_id}",
        state=RunState.RUNNING,
    )
    await db.write(flow.tenant.id, RUNS.insert, run)
    await db.write(
        flow.tenant.id, trigger_store.update_schedule, flow.workflow_id, schedule_id, {"last_run_id": run.id}
    )
    return run.id


async def _end_run(db: Database, tenant_id: str, run_id: str) -> None:
    await db.write(tenant_id, RUNS.update, (run_id,), {"state": RunState.SUCCEEDED, "end_time": utcnow()})


def _key(flow: Flow, schedule_id: str) -> schedules.ScheduleKey:
    return schedules.ScheduleKey(
        tenant_id=flow.tenant.id, workflow_id=flow.workflow_id, schedule_id=schedule_id
    )


def _at(seconds: float) -> str:
    """A fire time ``seconds`` from now, in whole seconds (after the schedule was created)."""
    return (utcnow().replace(microsecond=0) + dt.timedelta(seconds=seconds)).isoformat()


# A cron that fires on 1 January only: DBOS's scheduler starts nothing during these tests.
YEARLY = "0 0 1 1 *"


async def test_skip_starts_nothing_while_the_previous_run_runs(flow: Flow, workflow_db: Database) -> None:
    await _create(flow, "skip", cron=YEARLY, overlap_policy=res.OVERLAP_POLICY_SKIP)
    key = _key(flow, "skip")
    held = await _hold_previous_run(workflow_db, flow, "skip")
    assert await schedules._decide_step(key, _at(1)) == "overlap"
    await _end_run(workflow_db, flow.tenant.id, held)
    fire_time = _at(2)
    assert await schedules._decide_step(key, fire_time) == "start"
    first = await schedules.start_fire(key, fire_time)
    assert await schedules.start_fire(key, fire_time) == first, "a retried step finds its run"
    assert await schedules._decide_step(key, _at(3)) == "overlap", "the new run is the previous one now"
    a_day_ago = utcnow() - dt.timedelta(days=1)
    await workflow_db.write(
        flow.tenant.id, trigger_store.update_schedule, flow.workflow_id, "skip", {"active_since": a_day_ago}
    )
    assert await schedules._decide_step(key, _at(-3600)) == "missed", "older than the catch-up window"


async def test_allow_all_starts_a_run_while_the_previous_one_runs(flow: Flow, workflow_db: Database) -> None:
    await _create(flow, "all", cron=YEARLY, overlap_policy=res.OVERLAP_POLICY_ALLOW_ALL)
    await _hold_previous_run(workflow_db, flow, "all")
    assert await schedules._decide_step(_key(flow, "all"), _at(1)) == "start"


async def test_buffer_one_keeps_one_fire_time_until_the_previous_run_ends(
    flow: Flow, workflow_db: Database
) -> None:
    schedule = await _create(flow, "buffer", cron=YEARLY, overlap_policy=res.OVERLAP_POLICY_BUFFER_ONE)
    key = _key(flow, "buffer")
    held = await _hold_previous_run(workflow_db, flow, "buffer")
    buffered_time = dt.datetime.fromisoformat(_at(1))
    handle = await DBOS.start_workflow_async(schedules.fire_schedule, buffered_time, key)
    while (
        row := await workflow_db.read(flow.tenant.id, trigger_store.get_schedule, flow.workflow_id, "buffer")
    ) is None or row.buffered_fire_time is None:
        await asyncio.sleep(0.05)
    assert await schedules._decide_step(key, _at(2)) == "buffer_full", "one fire time is kept, no more"
    assert (await handle.get_status()).status == "PENDING", "waits for the previous run"
    await _end_run(workflow_db, flow.tenant.id, held)
    await asyncio.wait_for(handle.get_result(), timeout=30)
    got = await flow.stub.GetSchedule(
        pb.GetScheduleRequest(name=schedule.name), metadata=flow.tenant.metadata
    )
    assert from_timestamp(got.last_fire_time) == buffered_time
    row = await workflow_db.read(flow.tenant.id, trigger_store.get_schedule, flow.workflow_id, "buffer")
    assert row is not None and row.buffered_fire_time is None and row.last_run_id != held
    runs = await _scheduled_runs(flow)
    assert [json.loads(r.input)["scheduled_time"] for r in runs] == [buffered_time.isoformat()]


async def test_a_buffered_fire_time_of_a_schedule_paused_meanwhile_starts_nothing(
    flow: Flow, workflow_db: Database
) -> None:
    schedule = await _create(flow, "paused", cron=YEARLY, overlap_policy=res.OVERLAP_POLICY_BUFFER_ONE)
    key = _key(flow, "paused")
    held = await _hold_previous_run(workflow_db, flow, "paused")
    handle = await DBOS.start_workflow_async(schedules.fire_schedule, dt.datetime.fromisoformat(_at(1)), key)
    while (
        row := await workflow_db.read(flow.tenant.id, trigger_store.get_schedule, flow.workflow_id, "paused")
    ) is None or row.buffered_fire_time is None:
        await asyncio.sleep(0.05)
    await flow.stub.PauseSchedule(pb.PauseScheduleRequest(name=schedule.name), metadata=flow.tenant.metadata)
    await _end_run(workflow_db, flow.tenant.id, held)
    await asyncio.wait_for(handle.get_result(), timeout=30)
    row = await workflow_db.read(flow.tenant.id, trigger_store.get_schedule, flow.workflow_id, "paused")
    assert row is not None and row.buffered_fire_time is None and row.last_run_id == held
    assert await _scheduled_runs(flow) == []


async def test_fire_times_missed_during_downtime_start_within_the_catchup_window(
    flow: Flow, workflow_db: Database
) -> None:
    """DBOS's backfill enqueues missed fire times as its scheduler does on a replica's return
    (``automatic_backfill``); only those at most ``catchup_window`` old start runs."""
    schedule = await _create(
        flow,
        "catchup",
        cron="*/10 * * * * *",
        overlap_policy=res.OVERLAP_POLICY_ALLOW_ALL,
        catchup_window=Duration(seconds=300),
    )
    await asyncio.to_thread(DBOS.pause_schedule, schedule.name)  # DBOS's alone: no live fire times
    now = utcnow()
    await workflow_db.write(  # as if the schedule had been made before the downtime
        flow.tenant.id,
        trigger_store.update_schedule,
        flow.workflow_id,
        "catchup",
        {"active_since": now - dt.timedelta(hours=1)},
    )
    old = await asyncio.to_thread(
        DBOS.backfill_schedule, schedule.name, now - dt.timedelta(minutes=10), now - dt.timedelta(minutes=9)
    )
    recent = await asyncio.to_thread(
        DBOS.backfill_schedule, schedule.name, now - dt.timedelta(minutes=4), now - dt.timedelta(minutes=3)
    )
    assert len(old) >= 5 and len(recent) >= 5
    # DBOS returns blocking handles; async ones wait without holding up the loop the workflows run on.
    handles: list[WorkflowHandleAsync[None]] = [
        await DBOS.retrieve_workflow_async(h.get_workflow_id()) for h in [*old, *recent]
    ]
    await asyncio.wait_for(asyncio.gather(*(handle.get_result() for handle in handles)), timeout=60)
    started = {
        dt.datetime.fromisoformat(json.loads(run.input)["scheduled_time"])
        for run in await _scheduled_runs(flow)
    }
    in_window = {t for t in started if now - dt.timedelta(minutes=4) < t < now - dt.timedelta(minutes=3)}
    assert len(in_window) == len(recent), "every fire time within the window started its run"
    assert not {t for t in started if t < now - dt.timedelta(minutes=5)}, "none older than the window"
