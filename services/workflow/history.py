"""A run's history: the event types and how each one changes the run.

The history is the source of a run's state: :func:`apply` folds one event into
the run's projection (the ``workflow_runs`` row), and the store applies each
event in the transaction that appends it, so the two never disagree. Event
types follow CloudEvents' reverse-DNS style (``type`` attribute, CloudEvents
1.0 section 3.1.1) under :data:`PREFIX`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from services.workflow.models import RunState, WorkflowRunRow

PREFIX = "dev.orchestrall.workflow."

RUN_STARTED = "run.started"
RUN_SUCCEEDED = "run.succeeded"
RUN_FAILED = "run.failed"
RUN_CANCEL_REQUESTED = "run.cancel_requested"
RUN_CANCELLED = "run.cancelled"
STEP_SCHEDULED = "step.scheduled"
STEP_STARTED = "step.started"
STEP_SUCCEEDED = "step.succeeded"
STEP_FAILED = "step.failed"
STEP_RETRIED = "step.retried"
STEP_SKIPPED = "step.skipped"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_GIVEN = "approval.given"
TIMER_STARTED = "timer.started"
TIMER_FIRED = "timer.fired"
SIGNAL_RECEIVED = "signal.received"
NOTIFICATION_SENT = "notification.sent"
COMPENSATION_STARTED = "compensation.started"
COMPENSATION_SUCCEEDED = "compensation.succeeded"
COMPENSATION_FAILED = "compensation.failed"


def _step(steps: list[dict[str, Any]], step_id: str) -> dict[str, Any]:
    return next(step for step in steps if step["step_id"] == step_id)


def apply(
    run: WorkflowRunRow, kind: str, step_id: str, data: dict[str, Any], time: dt.datetime
) -> WorkflowRunRow:
    """Folds one event into a run.

    Args:
        run: The run before the event.
        kind: The event type without :data:`PREFIX` (for example ``step.succeeded``).
        step_id: The step it is about; empty for the run's own events.
        data: Its details (``output``, ``error_reason``, ``error_message``,
            ``attempt``, ``input``, ``agent_run``).
        time: When it happened.

    Returns:
        The run after it (a new record; ``run`` is not changed).
    """
    steps = [dict(step) for step in run.steps]
    changes: dict[str, Any] = {"steps": steps}
    at = time.isoformat()
    if kind == RUN_STARTED:
        changes["state"] = RunState.RUNNING
    elif kind == RUN_SUCCEEDED:
        changes |= {"state": RunState.SUCCEEDED, "output": data.get("output", ""), "end_time": time}
    elif kind in (RUN_FAILED, RUN_CANCELLED):
        changes |= {
            "state": RunState.FAILED if kind == RUN_FAILED else RunState.CANCELLED,
            "error_reason": data.get("error_reason", ""),
            "error_message": data.get("error_message", ""),
            "end_time": time,
        }
        for step in steps:  # steps stopped mid-way
            if step["state"] in (RunState.RUNNING, RunState.WAITING):
                step.update(state=RunState.CANCELLED, end_time=at)
            elif step["state"] == RunState.PENDING:
                step["state"] = RunState.SKIPPED
    elif kind == RUN_CANCEL_REQUESTED:
        changes["cancel_time"] = run.cancel_time or time
    elif step_id:
        step = _step(steps, step_id)
        if kind == STEP_STARTED:
            step.update(state=RunState.RUNNING, attempts=data.get("attempt", 1))
            step.setdefault("start_time", at)
            for key in ("input", "agent_run"):
                if key in data:
                    step[key] = data[key]
        elif kind == STEP_SCHEDULED and step["state"] == RunState.PENDING:
            step["state"] = RunState.RUNNING
            step.setdefault("start_time", at)
        elif kind == APPROVAL_REQUESTED:
            step["state"] = RunState.WAITING
            changes["state"] = RunState.WAITING
        elif kind == APPROVAL_GIVEN:
            step["state"] = RunState.RUNNING
        elif kind == STEP_SUCCEEDED:
            step.update(state=RunState.SUCCEEDED, output=data.get("output", "null"), end_time=at)
        elif kind == STEP_FAILED:
            step.update(
                state=RunState.FAILED,
                error_reason=data.get("error_reason", ""),
                error_message=data.get("error_message", ""),
                end_time=at,
            )
        elif kind == STEP_SKIPPED:
            step.update(state=RunState.SKIPPED, end_time=at)
        elif kind == COMPENSATION_SUCCEEDED:
            step["compensated"] = True
        if kind in (APPROVAL_GIVEN, STEP_SUCCEEDED, STEP_FAILED) and run.state == RunState.WAITING:
            waiting = any(s["state"] == RunState.WAITING for s in steps)
            changes["state"] = RunState.WAITING if waiting else RunState.RUNNING
    return dataclasses.replace(run, **changes)
