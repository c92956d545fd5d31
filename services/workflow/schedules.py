"""Cron schedules of workflows: the schedule RPCs and the DBOS workflow that fires them.

A schedule is a row of ``workflow_schedules`` (what the API shows) and a DBOS dynamic
schedule of the same name, its resource name (what fires). DBOS's scheduler reads the
cron expression in the schedule's time zone with croniter, as :func:`next_fire_times`
does, and at each fire time enqueues :func:`fire_schedule` with that time and the
schedule's key as context; a fire time is one DBOS workflow
(``sched-<name>-<time>``), whichever replica's scheduler sees it first. The workflow
decides in a step, from the row, whether the fire time starts a run:

* a fire time before the schedule's ``active_since`` (created or resumed later) or of a
  deleted or paused schedule starts none;
* one older than the catch-up window (:func:`catchup_window`; DBOS enqueues the fire
  times missed while no replica ran, ``automatic_backfill``) starts none;
* while the previous run of the schedule has not ended: ``SKIP`` starts none,
  ``BUFFER_ONE`` keeps the fire time if no other is kept and starts its run once the
  previous one ended (waiting with DBOS's durable sleep), ``ALLOW_ALL`` starts it.

A started run's request ID is ``schedule:<schedule id>:<fire time, ISO 8601 UTC>``,
so a fire step retried after a crash finds the run it started, and its trigger is the
schedule's name.

Cron: five fields (minute hour day-of-month month day-of-week) or six with seconds
first, as croniter reads them (``second_at_beginning``). Across daylight-saving
changes croniter fires a local time that does not exist at the first moment after the
gap, and a repeated local time at both of its instants.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from croniter import croniter
from dbos import DBOS
from google.protobuf import empty_pb2

from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.names import ResourceName, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.timestamps import as_utc, to_timestamp, utcnow
from services.workflow import errors, trigger_store
from services.workflow.models import ENDED, OverlapPolicy, ScheduleRow

if TYPE_CHECKING:
    from services.workflow.models import WorkflowRunRow

log = logging.getLogger(__name__)

SCHEDULE = ResourceName.of(res.Schedule)
WORKFLOW = ResourceName.of(res.Workflow)
OVERLAP_POLICIES = EnumMap(OverlapPolicy, res.OverlapPolicy, "OVERLAP_POLICY_")
#: How many next fire times ``GetSchedule`` returns (``Schedule.next_fire_times``).
NEXT_FIRE_TIMES = 5
#: A fire time this recent is on time, whatever the catch-up window: DBOS's scheduler
#: enqueues it up to 10 s late (its jitter) and a queue takes a moment to run it.
ON_TIME_SECONDS = 60
#: How often a buffered fire time looks whether the previous run has ended (durable sleep).
BUFFER_POLL_SECONDS = 1.0
FIRE_WORKFLOW = "orchestrall.workflow.fire_schedule"


class ScheduleKey(TypedDict):
    """The context DBOS passes to each firing: which schedule's row to read."""

    tenant_id: str
    workflow_id: str
    schedule_id: str


def cron_violations(cron: str, path: str) -> list[FieldViolation]:
    """Checks a cron expression: five fields, or six with seconds first, that croniter accepts."""
    fields = cron.split()
    if len(fields) not in (5, 6):
        return [
            FieldViolation(path, "must have 5 fields (minute hour day month weekday) or 6 (seconds first)")
        ]
    if not croniter.is_valid(cron, second_at_beginning=True):
        return [FieldViolation(path, "is not a cron expression")]
    return []


def zone_of(name: str) -> ZoneInfo | None:
    """Returns the IANA time zone ``name`` (empty is ``UTC``), or None when there is no such zone."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: not a zone key (a path, "..")
        return None


def next_fire_times(
    cron: str, zone: ZoneInfo, now: dt.datetime, count: int = NEXT_FIRE_TIMES
) -> list[dt.datetime]:
    """Returns the next fire times after ``now``, in UTC.

    The expression is read in ``zone`` (croniter over zone-aware times, as DBOS's
    scheduler reads it), so a local 09:00 is 08:00 UTC in Amsterdam's winter and
    07:00 UTC in its summer.

    Args:
        cron: A valid expression (:func:`cron_violations`).
        zone: The schedule's time zone.
        now: An aware time.
        count: How many.
    """
    times = croniter(cron, now.astimezone(zone), second_at_beginning=True)
    return [times.get_next(dt.datetime).astimezone(dt.UTC) for _ in range(count)]


def catchup_window(schedule: ScheduleRow) -> dt.timedelta:
    """How old a fire time may be and start a run: the catch-up window, at least :data:`ON_TIME_SECONDS`."""
    return dt.timedelta(seconds=max(schedule.catchup_seconds, ON_TIME_SECONDS))


def request_id_of(schedule_id: str, fire_time: dt.datetime) -> str:
    """The request ID of the run a fire time starts: ``schedule:<id>:<fire time ISO 8601 UTC>``."""
    return f"schedule:{schedule_id}:{fire_time.astimezone(dt.UTC).isoformat()}"


def schedule_to_proto(schedule: ScheduleRow, now: dt.datetime | None = None) -> res.Schedule:
    """Maps a schedule row to its resource, with its next fire times after ``now`` (default: now)."""
    message = res.Schedule(
        name=SCHEDULE.format(schedule.tenant_id, schedule.workflow_id, schedule.id),
        cron=schedule.cron,
        time_zone=schedule.time_zone,
        input=schedule.input,
        overlap_policy=OVERLAP_POLICIES.to_proto(schedule.overlap_policy),  # type: ignore[arg-type]
        paused=schedule.paused,
        last_fire_time=to_timestamp(schedule.last_fire_time),
        create_time=to_timestamp(schedule.create_time),
    )
    if schedule.catchup_seconds:
        message.catchup_window.FromSeconds(schedule.catchup_seconds)
    zone = zone_of(schedule.time_zone)
    if not schedule.paused and zone is not None:
        for time in next_fire_times(schedule.cron, zone, now or utcnow()):
            message.next_fire_times.add().CopyFrom(to_timestamp(time))
    return message


# The firing ----------------------------------------------------------------------------------------


@dataclass
class _Firing:
    """What :func:`fire_schedule` reaches outside itself: the database and ``start_run``."""

    db: Database
    service: Any  # the WorkflowService (its start_run)


_FIRING: _Firing | None = None


def bind(db: Database, service: Any) -> None:
    """Makes ``service`` (its ``start_run``) and ``db`` the ones this process's firings use.

    DBOS workflows are module-level functions found by name at recovery, so they reach
    the service through this module (one per process, as DBOS is).
    """
    global _FIRING
    _FIRING = _Firing(db, service)


def _firing() -> _Firing:
    assert _FIRING is not None, "the workflow service is not bound (schedules.bind)"
    return _FIRING


def _decide(
    schedule: ScheduleRow | None, previous_active: bool, fire_time: dt.datetime, now: dt.datetime
) -> str:
    """Returns what a fire time does: ``start``, ``buffer`` or why it starts nothing."""
    if schedule is None:
        return "deleted"
    if schedule.paused:
        return "paused"
    if fire_time < as_utc(schedule.active_since):
        return "before_active"
    if now - fire_time > catchup_window(schedule):
        return "missed"
    if not previous_active or schedule.overlap_policy == OverlapPolicy.ALLOW_ALL:
        return "start"
    if schedule.overlap_policy == OverlapPolicy.BUFFER_ONE:
        return "buffer"
    return "overlap"


def _previous_active(tx: Any, schedule: ScheduleRow | None) -> bool:
    if schedule is None or schedule.last_run_id is None:
        return False
    run = trigger_store.run_of(tx, schedule.last_run_id)
    return run is not None and run.state not in ENDED


def _look(tx: Any, key: ScheduleKey, fire_time: dt.datetime, now: dt.datetime) -> str:
    """Reads the schedule and its previous run and decides; a buffered fire time claims the place."""
    schedule = trigger_store.get_schedule(tx, key["workflow_id"], key["schedule_id"])
    decision = _decide(schedule, _previous_active(tx, schedule), fire_time, now)
    if decision == "buffer" and not trigger_store.claim_buffer(
        tx, key["workflow_id"], key["schedule_id"], fire_time
    ):
        return "buffer_full"
    return decision


@DBOS.step(name="orchestrall.workflow.schedule_decide")
async def _decide_step(key: ScheduleKey, fire_time: str) -> str:
    """Decides what a fire time does (see the module's rules), in one transaction."""
    return await _firing().db.write(
        key["tenant_id"], _look, key, dt.datetime.fromisoformat(fire_time), utcnow()
    )


def _still_running(tx: Any, key: ScheduleKey) -> bool:
    return _previous_active(tx, trigger_store.get_schedule(tx, key["workflow_id"], key["schedule_id"]))


@DBOS.step(name="orchestrall.workflow.schedule_previous_running")
async def _previous_running_step(key: ScheduleKey) -> bool:
    """Whether the schedule's previous run has not ended yet."""
    return await _firing().db.read(key["tenant_id"], _still_running, key)


def _record(tx: Any, key: ScheduleKey, fire_time: dt.datetime, run_id: str | None) -> None:
    """Records a fire time's run on its schedule (None: it started none), and frees its buffer place."""
    schedule = trigger_store.get_schedule(tx, key["workflow_id"], key["schedule_id"], lock=True)
    if schedule is None:
        return
    values: dict[str, Any] = {} if run_id is None else {"last_fire_time": fire_time, "last_run_id": run_id}
    if schedule.buffered_fire_time is not None and as_utc(schedule.buffered_fire_time) == fire_time:
        values["buffered_fire_time"] = None
    if values:
        trigger_store.update_schedule(tx, key["workflow_id"], key["schedule_id"], values)


@DBOS.step(name="orchestrall.workflow.schedule_run_input")
async def _input_step(key: ScheduleKey, fire_time: str) -> str | None:
    """Returns the input of the fire time's run, or None when it starts none after all.

    A schedule deleted or paused since the fire time was decided (a buffered one waited)
    starts nothing; a paused one gets its buffer place back.
    """
    firing = _firing()
    time = dt.datetime.fromisoformat(fire_time)
    schedule = await firing.db.read(
        key["tenant_id"], trigger_store.get_schedule, key["workflow_id"], key["schedule_id"]
    )
    if schedule is None:
        return None
    if schedule.paused:
        await firing.db.write(key["tenant_id"], _record, key, time, None)
        return None
    return schedule.input or _default_input(time)


@DBOS.step(name="orchestrall.workflow.schedule_record_run")
async def _record_step(key: ScheduleKey, fire_time: str, run_id: str) -> None:
    """Records the run a fire time started on its schedule (what the overlap policy looks at next)."""
    await _firing().db.write(key["tenant_id"], _record, key, dt.datetime.fromisoformat(fire_time), run_id)


async def start_fire(key: ScheduleKey, fire_time: str) -> str:
    """Starts a fire time's run and records it on the schedule.

    ``start_run`` is called in the workflow itself, not in a step: it enqueues the run's
    own DBOS workflow, which DBOS allows from a workflow only. It is idempotent by the
    run's request ID (:func:`request_id_of`), so a fire workflow recovered after a crash
    finds the run it started.

    Returns:
        The run's ID; empty when none was started (:func:`_input_step`).
    """
    run_input = await _input_step(key, fire_time)
    if run_input is None:
        return ""
    time = dt.datetime.fromisoformat(fire_time)
    run: WorkflowRunRow = await _firing().service.start_run(
        key["tenant_id"],
        key["workflow_id"],
        run_input,
        request_id_of(key["schedule_id"], time),
        trigger=SCHEDULE.format(key["tenant_id"], key["workflow_id"], key["schedule_id"]),
    )
    await _record_step(key, fire_time, run.id)
    return run.id


def _default_input(fire_time: dt.datetime) -> str:
    """The input of a run of a schedule with none: ``{"scheduled_time": "<ISO 8601 UTC>"}``."""
    return '{"scheduled_time": "' + fire_time.astimezone(dt.UTC).isoformat() + '"}'


@DBOS.workflow(name=FIRE_WORKFLOW)
async def fire_schedule(scheduled_time: dt.datetime, context: ScheduleKey) -> None:
    """One fire time of a schedule (DBOS's scheduler starts it): starts a run, or none, by the rules above."""
    fire_time = as_utc(scheduled_time).astimezone(dt.UTC).isoformat()
    decision = await _decide_step(context, fire_time)
    if decision == "buffer":
        while await _previous_running_step(context):
            await DBOS.sleep_async(BUFFER_POLL_SECONDS)
    elif decision != "start":
        log.info("schedule %s: fire time %s starts no run (%s)", context["schedule_id"], fire_time, decision)
        return
    await start_fire(context, fire_time)


async def _register(schedule: ScheduleRow) -> None:
    """Creates (or replaces) the DBOS schedule of a row, paused when the row is."""
    name = SCHEDULE.format(schedule.tenant_id, schedule.workflow_id, schedule.id)
    key = ScheduleKey(tenant_id=schedule.tenant_id, workflow_id=schedule.workflow_id, schedule_id=schedule.id)
    await DBOS.delete_schedule_async(name)
    await DBOS.create_schedule_async(
        schedule_name=name,
        workflow_fn=fire_schedule,
        schedule=schedule.cron,
        context=key,
        automatic_backfill=schedule.catchup_seconds > 0,
        cron_timezone=schedule.time_zone or "UTC",
    )
    if schedule.paused:
        await asyncio.to_thread(DBOS.pause_schedule, name)


async def sync_schedules(db: Database) -> None:
    """Makes DBOS's schedules those of the table, at start-up (a write cut short between the two).

    DBOS schedules without a row are deleted; rows without a DBOS schedule, or whose
    paused state differs, are registered again.
    """
    rows = {
        SCHEDULE.format(r.tenant_id, r.workflow_id, r.id): r
        for r in await db.system(trigger_store.all_schedules)
    }
    registered = {
        s["schedule_name"]: s for s in await DBOS.list_schedules_async(schedule_name_prefix="tenants/")
    }
    for name in registered.keys() - rows.keys():
        await DBOS.delete_schedule_async(name)
    for name, row in rows.items():
        found = registered.get(name)
        if found is None or (found["status"] != "ACTIVE") != row.paused or found["schedule"] != row.cron:
            await _register(row)


# The RPCs ------------------------------------------------------------------------------------------


class ScheduleHandlers:
    """The schedule RPCs of :class:`~services.workflow.service.WorkflowService` (a mixin; its ``_db``)."""

    _db: Database

    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: grpc.aio.ServicerContext
    ) -> res.Schedule:
        """Creates a schedule and registers it with DBOS's scheduler.

        Raises:
            InvalidArgument: ``schedule_id`` not an AIP-122 ID; ``schedule.cron`` not 5 or 6
                cron fields; ``schedule.time_zone`` not an IANA zone.
            NotFound: ``WORKFLOW_NOT_FOUND``.
            AlreadyExists: ``SCHEDULE_ALREADY_EXISTS``.
        """
        tenant_id, workflow_id = WORKFLOW.parse(request.parent, "parent")
        require_tenant(tenant_id)
        violations: list[FieldViolation] = []
        if request.schedule_id:
            try:
                validate_id(request.schedule_id, "schedule_id")
            except InvalidArgument as error:
                violations += error.violations
        violations += cron_violations(request.schedule.cron, "schedule.cron")
        if zone_of(request.schedule.time_zone) is None:
            violations.append(
                FieldViolation("schedule.time_zone", "is not an IANA time zone (e.g. Europe/Amsterdam)")
            )
        if violations:
            raise InvalidArgument(violations)
        now = utcnow()
        schedule = ScheduleRow(
            tenant_id=tenant_id,
            workflow_id=workflow_id,
            id=request.schedule_id or new_id(),
            cron=" ".join(request.schedule.cron.split()),
            time_zone=request.schedule.time_zone or "UTC",
            input=request.schedule.input,
            overlap_policy=OVERLAP_POLICIES.from_proto(request.schedule.overlap_policy) or OverlapPolicy.SKIP,
            catchup_seconds=request.schedule.catchup_window.seconds
            if request.schedule.HasField("catchup_window")
            else 0,
            paused=False,
            last_fire_time=None,
            last_run_id=None,
            buffered_fire_time=None,
            active_since=now,
            create_time=now,
        )
        name = SCHEDULE.format(tenant_id, workflow_id, schedule.id)
        note_resource(name)
        try:
            created = await self._db.write(tenant_id, trigger_store.create_schedule, schedule)
        except LookupError:
            raise errors.workflow_not_found(request.parent) from None
        if created is None:
            raise errors.schedule_exists(name)
        try:
            await _register(created)
        except Exception:  # the row goes too, so no schedule is half made
            await self._db.write(tenant_id, trigger_store.delete_schedule, workflow_id, created.id)
            raise
        return schedule_to_proto(created, now)

    async def GetSchedule(
        self, request: pb.GetScheduleRequest, context: grpc.aio.ServicerContext
    ) -> res.Schedule:
        """Returns a schedule with its next fire times (none while paused).

        Raises:
            NotFound: ``SCHEDULE_NOT_FOUND``.
        """
        tenant_id, workflow_id, schedule_id = SCHEDULE.parse(request.name, "name")
        require_tenant(tenant_id)
        schedule = await self._db.read(tenant_id, trigger_store.get_schedule, workflow_id, schedule_id)
        if schedule is None:
            raise errors.schedule_not_found(request.name)
        return schedule_to_proto(schedule)

    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSchedulesResponse:
        """Returns a page of a workflow's schedules, newest first.

        Raises:
            NotFound: ``WORKFLOW_NOT_FOUND``.
        """
        tenant_id, workflow_id = WORKFLOW.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listed = await self._db.read(tenant_id, trigger_store.list_schedules, workflow_id, page)
        if listed is None:
            raise errors.workflow_not_found(request.parent)
        now = utcnow()
        schedules, token = listed.messages(lambda row: schedule_to_proto(row, now))
        return pb.ListSchedulesResponse(schedules=schedules, next_page_token=token)

    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        """Deletes a schedule and its DBOS schedule; the runs it started go on.

        Raises:
            NotFound: ``SCHEDULE_NOT_FOUND``.
        """
        tenant_id, workflow_id, schedule_id = SCHEDULE.parse(request.name, "name")
        require_tenant(tenant_id)
        note_resource(request.name)
        if not await self._db.write(tenant_id, trigger_store.delete_schedule, workflow_id, schedule_id):
            raise errors.schedule_not_found(request.name)
        await DBOS.delete_schedule_async(request.name)  # a fire time already enqueued finds no row
        return empty_pb2.Empty()

    async def _set_paused(self, name: str, paused: bool) -> res.Schedule:
        tenant_id, workflow_id, schedule_id = SCHEDULE.parse(name, "name")
        require_tenant(tenant_id)
        note_resource(name)
        now = utcnow()
        values: dict[str, Any] = {"paused": paused}
        if not paused:
            values["active_since"] = now
        schedule = await self._db.write(
            tenant_id, trigger_store.update_schedule, workflow_id, schedule_id, values
        )
        if schedule is None:
            raise errors.schedule_not_found(name)
        await asyncio.to_thread(DBOS.pause_schedule if paused else DBOS.resume_schedule, name)
        return schedule_to_proto(schedule, now)

    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: grpc.aio.ServicerContext
    ) -> res.Schedule:
        """Pauses a schedule: its fire times start no run until it is resumed.

        Raises:
            NotFound: ``SCHEDULE_NOT_FOUND``.
        """
        return await self._set_paused(request.name, True)

    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: grpc.aio.ServicerContext
    ) -> res.Schedule:
        """Resumes a schedule from its next fire time: those missed while paused are not caught up.

        Raises:
            NotFound: ``SCHEDULE_NOT_FOUND``.
        """
        return await self._set_paused(request.name, False)
