"""SQL of the workflow service's triggers: webhook triggers and cron schedules, through the kit's repository.

Kept apart from :mod:`services.workflow.store` (workflows and runs). Every query
filters by the transaction's tenant; a workflow's triggers and schedules are keyed
by ``(workflow_id, id)`` within it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Repository
from services.workflow.models import (
    Schedule,
    ScheduleRow,
    Trigger,
    TriggerRow,
    Workflow,
    WorkflowRow,
    WorkflowRun,
    WorkflowRunRow,
)

TRIGGERS = Repository(Trigger, TriggerRow, order=NEWEST_FIRST)
SCHEDULES = Repository(Schedule, ScheduleRow, order=NEWEST_FIRST)
_WORKFLOWS = Repository(Workflow, WorkflowRow)
_RUNS = Repository(WorkflowRun, WorkflowRunRow)
_TRIGGERS = TRIGGERS.table
_SCHEDULES = SCHEDULES.table


def workflow_exists(tx: Tx, workflow_id: str) -> bool:
    """Whether the tenant has the workflow."""
    return _WORKFLOWS.get(tx, workflow_id) is not None


# Webhook triggers -----------------------------------------------------------------------------------


def create_trigger(tx: Tx, trigger: TriggerRow) -> TriggerRow | None:
    """Inserts a trigger of an existing workflow.

    Returns:
        The trigger; None when its ID is taken (nothing is written then).

    Raises:
        LookupError: The workflow does not exist.
    """
    if not workflow_exists(tx, trigger.workflow_id):
        raise LookupError(trigger.workflow_id)
    return trigger if TRIGGERS.insert(tx, trigger) else None


def get_trigger(tx: Tx, workflow_id: str, trigger_id: str) -> TriggerRow | None:
    """Returns the tenant's trigger, or None."""
    return TRIGGERS.get(tx, workflow_id, trigger_id)


def list_triggers(tx: Tx, workflow_id: str, page: Page) -> Listing[TriggerRow] | None:
    """Returns a page of a workflow's triggers, newest first; None when there is no such workflow."""
    if not workflow_exists(tx, workflow_id):
        return None
    return TRIGGERS.list_page(tx, page, _TRIGGERS.c.workflow_id == workflow_id)


def delete_trigger(tx: Tx, workflow_id: str, trigger_id: str) -> bool:
    """Deletes the tenant's trigger; returns whether there was one."""
    return TRIGGERS.delete(tx, workflow_id, trigger_id)


# Schedules ------------------------------------------------------------------------------------------


def create_schedule(tx: Tx, schedule: ScheduleRow) -> ScheduleRow | None:
    """Inserts a schedule of an existing workflow.

    Returns:
        The schedule; None when its ID is taken (nothing is written then).

    Raises:
        LookupError: The workflow does not exist.
    """
    if not workflow_exists(tx, schedule.workflow_id):
        raise LookupError(schedule.workflow_id)
    return schedule if SCHEDULES.insert(tx, schedule) else None


def get_schedule(tx: Tx, workflow_id: str, schedule_id: str, *, lock: bool = False) -> ScheduleRow | None:
    """Returns the tenant's schedule, or None; ``lock`` holds its row until the transaction ends."""
    return SCHEDULES.get(tx, workflow_id, schedule_id, lock=lock)


def list_schedules(tx: Tx, workflow_id: str, page: Page) -> Listing[ScheduleRow] | None:
    """Returns a page of a workflow's schedules, newest first; None when there is no such workflow."""
    if not workflow_exists(tx, workflow_id):
        return None
    return SCHEDULES.list_page(tx, page, _SCHEDULES.c.workflow_id == workflow_id)


def delete_schedule(tx: Tx, workflow_id: str, schedule_id: str) -> bool:
    """Deletes the tenant's schedule; returns whether there was one."""
    return SCHEDULES.delete(tx, workflow_id, schedule_id)


def update_schedule(
    tx: Tx, workflow_id: str, schedule_id: str, values: Mapping[str, Any]
) -> ScheduleRow | None:
    """Sets columns of the tenant's schedule; returns it updated, or None when there is none."""
    return SCHEDULES.update(tx, (workflow_id, schedule_id), values)


def all_schedules(tx: Tx) -> list[ScheduleRow]:
    """Returns every tenant's schedules (system work: registering them with the scheduler at start-up).

    On PostgreSQL this sees every tenant's rows only in a system transaction.
    """
    return SCHEDULES.records(tx.execute(SCHEDULES.table.select()).all())


def run_of(tx: Tx, run_id: str) -> WorkflowRunRow | None:
    """Returns the tenant's workflow run, or None."""
    return _RUNS.get(tx, run_id)


def claim_buffer(tx: Tx, workflow_id: str, schedule_id: str, fire_time: dt.datetime) -> bool:
    """Makes ``fire_time`` the schedule's one buffered fire time, unless another holds the place.

    Returns:
        Whether ``fire_time`` holds it (also when it held it already: a retried step).
    """
    schedule = SCHEDULES.get(tx, workflow_id, schedule_id, lock=True)
    if schedule is None:
        return False
    if schedule.buffered_fire_time is not None:
        return schedule.buffered_fire_time == fire_time
    SCHEDULES.update(tx, (workflow_id, schedule_id), {"buffered_fire_time": fire_time})
    return True
