"""SQL of the workflow service, through the kit's repository.

Tenant-facing queries filter by the transaction's tenant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select

from services.kit.db import Tx
from services.kit.names import new_id
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Order, Repository
from services.kit.timestamps import utcnow
from services.workflow import history
from services.workflow.models import (
    ENDED,
    RunState,
    Workflow,
    WorkflowRevision,
    WorkflowRevisionRow,
    WorkflowRow,
    WorkflowRun,
    WorkflowRunEvent,
    WorkflowRunEventRow,
    WorkflowRunRow,
    WorkflowSignal,
    WorkflowSignalRow,
)

WORKFLOWS = Repository(Workflow, WorkflowRow, order=NEWEST_FIRST)
REVISIONS = Repository(WorkflowRevision, WorkflowRevisionRow, order=NEWEST_FIRST)
RUNS = Repository(WorkflowRun, WorkflowRunRow, order=NEWEST_FIRST)
EVENTS = Repository(WorkflowRunEvent, WorkflowRunEventRow, order=(Order("sequence"),))
SIGNALS = Repository(WorkflowSignal, WorkflowSignalRow, order=(Order("create_time"),))
_RUNS = RUNS.table
_EVENTS = EVENTS.table
_SIGNALS = SIGNALS.table
_REVISIONS = REVISIONS.table


def create_workflow(tx: Tx, workflow: WorkflowRow) -> WorkflowRow | None:
    """Inserts a workflow and its first revision, or returns what an earlier request (``request_id``) made.

    Returns:
        The workflow; None when its ID is taken (nothing is written then).
    """
    created = WORKFLOWS.create(tx, workflow)
    if created is workflow:
        REVISIONS.insert(tx, _revision_of(workflow))
    return created


def _revision_of(workflow: WorkflowRow) -> WorkflowRevisionRow:
    return WorkflowRevisionRow(
        tenant_id=workflow.tenant_id,
        workflow_id=workflow.id,
        revision_id=workflow.revision_id,
        display_name=workflow.display_name,
        definition=workflow.definition,
        create_time=workflow.revision_create_time,
    )


def update_workflow(
    tx: Tx, workflow_id: str, display_name: str, definition: dict[str, Any], now: dt.datetime
) -> WorkflowRow | None:
    """Makes ``display_name`` and ``definition`` the workflow's new revision, unless they are its current one.

    The revision ID is the next integer; the workflow row is locked while it is taken.

    Returns:
        The workflow after the update; None when there is no such workflow.
    """
    current = WORKFLOWS.get(tx, workflow_id, lock=True)
    if current is None:
        return None
    if (current.display_name, current.definition) == (display_name, definition):
        return current
    updated = dataclasses.replace(
        current,
        display_name=display_name,
        definition=definition,
        revision_id=str(int(current.revision_id) + 1),
        revision_create_time=now,
    )
    WORKFLOWS.update(
        tx,
        (workflow_id,),
        {
            k: getattr(updated, k)
            for k in ("display_name", "definition", "revision_id", "revision_create_time")
        },
    )
    REVISIONS.insert(tx, _revision_of(updated))
    return updated


def get_workflow(tx: Tx, workflow_id: str) -> WorkflowRow | None:
    """Returns the tenant's workflow, or None."""
    return WORKFLOWS.get(tx, workflow_id)


def list_workflows(tx: Tx, page: Page) -> Listing[WorkflowRow]:
    """Returns a page of the tenant's workflows, newest first, and whether more follow."""
    return WORKFLOWS.list_page(tx, page)


def list_revisions(tx: Tx, workflow_id: str, page: Page) -> Listing[WorkflowRevisionRow] | None:
    """Returns a page of a workflow's revisions, newest first; None when there is no such workflow."""
    if WORKFLOWS.get(tx, workflow_id) is None:
        return None
    return REVISIONS.list_page(tx, page, _REVISIONS.c.workflow_id == workflow_id)


def get_revision(tx: Tx, workflow_id: str, revision_id: str) -> WorkflowRevisionRow | None:
    """Returns one revision of the tenant's workflow, or None."""
    return REVISIONS.get(tx, workflow_id, revision_id)


def new_run(
    tenant_id: str, workflow_id: str, run_input: str, request_id: str | None, trigger: str
) -> WorkflowRunRow:
    """A pending run; :func:`store.start_run` pins it to the workflow's current revision."""
    return WorkflowRunRow(
        tenant_id=tenant_id,
        id=new_id(),
        workflow_id=workflow_id,
        input=run_input,
        state=RunState.PENDING,
        steps=[],
        output="",
        error_reason="",
        error_message="",
        request_id=request_id,
        create_time=utcnow(),
        end_time=None,
        revision_id="",
        trigger=trigger,
        cancel_time=None,
        last_sequence=0,
    )


def start_run(tx: Tx, run: WorkflowRunRow) -> tuple[WorkflowRunRow | None, bool]:
    """Pins a new run to its workflow's current revision and inserts it, or finds an earlier request's run.

    The new run gets a pending record per step of the revision.

    Returns:
        ``(run, created)``: ``created`` is False for an earlier request's run;
        ``(None, False)`` when there is no such workflow.
    """
    workflow = WORKFLOWS.get(tx, run.workflow_id)
    if workflow is None:
        return None, False
    if run.request_id:
        earlier = RUNS.find(tx, _RUNS.c.workflow_id == run.workflow_id, _RUNS.c.request_id == run.request_id)
        if earlier is not None:
            return earlier, False
    run = dataclasses.replace(
        run,
        revision_id=workflow.revision_id,
        steps=[{"step_id": s["id"], "state": RunState.PENDING} for s in workflow.definition["steps"]],
    )
    created = RUNS.create(tx, run)
    assert created is not None, "run IDs are UUIDs"
    return created, created is run


def get_run(tx: Tx, workflow_id: str, run_id: str) -> WorkflowRunRow | None:
    """Returns the run of the tenant's workflow, or None."""
    run = RUNS.get(tx, run_id)
    return run if run is not None and run.workflow_id == workflow_id else None


def get_run_by_id(tx: Tx, run_id: str) -> WorkflowRunRow | None:
    """Returns the tenant's run, or None (the engine knows runs by ID)."""
    return RUNS.get(tx, run_id)


def list_runs(tx: Tx, workflow_id: str, page: Page) -> Listing[WorkflowRunRow] | None:
    """Returns a page of a workflow's runs, newest first, and whether more follow.

    Returns None when there is no such workflow.
    """
    if WORKFLOWS.get(tx, workflow_id) is None:
        return None
    return RUNS.list_page(tx, page, _RUNS.c.workflow_id == workflow_id)


def append_event(
    tx: Tx, run_id: str, kind: str, step_id: str, data: dict[str, Any], dedup_key: str, now: dt.datetime
) -> WorkflowRunRow | None:
    """Appends an event to a run's history and applies it to the run, unless ``dedup_key`` came before.

    The run row is locked, so the run's events get consecutive sequence numbers
    in the order they commit.

    Returns:
        The run after the event (unchanged when the key was seen); None when there is
        no such run.
    """
    run = RUNS.get(tx, run_id, lock=True)
    if run is None:
        return None
    if EVENTS.find(tx, _EVENTS.c.run_id == run_id, _EVENTS.c.dedup_key == dedup_key) is not None:
        return run
    sequence = run.last_sequence + 1
    EVENTS.insert(
        tx,
        WorkflowRunEventRow(
            tenant_id=run.tenant_id,
            run_id=run_id,
            sequence=sequence,
            type=history.PREFIX + kind,
            step_id=step_id,
            time=now,
            data=data,
            dedup_key=dedup_key,
        ),
    )
    after = dataclasses.replace(history.apply(run, kind, step_id, data, now), last_sequence=sequence)
    RUNS.update(
        tx,
        (run_id,),
        {
            column: getattr(after, column)
            for column in ("state", "steps", "output", "error_reason", "error_message", "end_time")
            + ("cancel_time", "last_sequence")
        },
    )
    return after


def list_events(tx: Tx, workflow_id: str, run_id: str, page: Page) -> Listing[WorkflowRunEventRow] | None:
    """Returns a page of a run's events, oldest first; None when there is no such run."""
    if get_run(tx, workflow_id, run_id) is None:
        return None
    return EVENTS.list_page(tx, page, _EVENTS.c.run_id == run_id)


def add_signal(
    tx: Tx, run_id: str, name: str, payload: dict[str, Any], request_id: str | None, now: dt.datetime
) -> bool:
    """Keeps a signal for a run and appends ``signal.received``; a repeated ``request_id`` adds nothing.

    Returns:
        Whether it was added.
    """
    added = SIGNALS.insert(
        tx,
        WorkflowSignalRow(
            tenant_id=tx.tenant_id,
            id=new_id(),
            run_id=run_id,
            name=name,
            payload=payload,
            request_id=request_id,
            create_time=now,
            taken_by=None,
        ),
    )
    if added:
        data = {"request_id": request_id, "payload": payload}
        append_event(tx, run_id, history.SIGNAL_RECEIVED, name, data, f"signal:{request_id}", now)
    return added


def take_signal(tx: Tx, run_id: str, name: str, taker: str) -> dict[str, Any] | None:
    """Takes the oldest signal of ``name`` not taken yet, for ``taker`` (an engine step's key).

    A taker that asks again (its engine step ran again after a crash) gets the
    signal it took before, so no signal is taken twice.

    Returns:
        The signal's payload; None when there is none.
    """
    mine = SIGNALS.find(tx, _SIGNALS.c.run_id == run_id, _SIGNALS.c.taken_by == taker)
    if mine is not None:
        return mine.payload
    free = SIGNALS.find(
        tx, _SIGNALS.c.run_id == run_id, _SIGNALS.c.name == name, _SIGNALS.c.taken_by.is_(None)
    )
    if free is None:
        return None
    SIGNALS.update(tx, (free.id,), {"taken_by": taker})
    return free.payload


def unfinished_runs(tx: Tx) -> list[tuple[str, str]]:
    """Returns ``(tenant, run)`` of every tenant's run that has not ended, oldest first (system work)."""
    query = (
        select(_RUNS.c.tenant_id, _RUNS.c.id)
        .where(_RUNS.c.state.not_in(tuple(ENDED)))
        .order_by(_RUNS.c.create_time)
    )
    return [(row[0], row[1]) for row in tx.execute(query).all()]
