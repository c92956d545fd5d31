"""SQL of the workflow service, through the kit's repository.

Tenant-facing queries filter by the transaction's tenant.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Repository
from services.workflow.models import RunState, Workflow, WorkflowRow, WorkflowRun, WorkflowRunRow

WORKFLOWS = Repository(Workflow, WorkflowRow, order=NEWEST_FIRST)
RUNS = Repository(WorkflowRun, WorkflowRunRow, order=NEWEST_FIRST)
_RUNS = RUNS.table
_WORKFLOWS = WORKFLOWS.table
# Columns a run's progress changes.
_PROGRESS = ("state", "steps", "output", "error_reason", "error_message", "end_time")


def create_workflow(tx: Tx, workflow: WorkflowRow) -> WorkflowRow | None:
    """Inserts a workflow, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The workflow; None when its ID is taken (nothing is written then).
    """
    return WORKFLOWS.create(tx, workflow)


def get_workflow(tx: Tx, workflow_id: str) -> WorkflowRow | None:
    """Returns the tenant's workflow, or None."""
    return WORKFLOWS.get(tx, workflow_id)


def list_workflows(tx: Tx, page: Page) -> Listing[WorkflowRow]:
    """Returns a page of the tenant's workflows, newest first, and whether more follow."""
    return WORKFLOWS.list_page(tx, page)


def start_run(tx: Tx, run: WorkflowRunRow) -> tuple[WorkflowRow | None, WorkflowRunRow | None, bool]:
    """Finds the run's workflow and inserts the run, or finds the run an earlier request made.

    The new run gets a pending record per step of the workflow.

    Returns:
        ``(workflow, run, created)``: ``created`` is False for an earlier request's run;
        ``(None, None, False)`` when there is no such workflow.
    """
    workflow = WORKFLOWS.get(tx, run.workflow_id)
    if workflow is None:
        return None, None, False
    run = dataclasses.replace(
        run, steps=[{"step_id": s["id"], "state": RunState.PENDING} for s in workflow.steps]
    )
    if run.request_id:
        earlier = RUNS.find(tx, _RUNS.c.workflow_id == run.workflow_id, _RUNS.c.request_id == run.request_id)
        if earlier is not None:
            return workflow, earlier, False
    created = RUNS.create(tx, run)
    assert created is not None, "run IDs are UUIDs"
    return workflow, created, created is run


def save_run(tx: Tx, run: WorkflowRunRow) -> None:
    """Writes a run's progress (state, steps, output, error, end time)."""
    RUNS.update(tx, (run.id,), {column: getattr(run, column) for column in _PROGRESS})


def get_run(tx: Tx, workflow_id: str, run_id: str) -> WorkflowRunRow | None:
    """Returns the run of the tenant's workflow, or None."""
    run = RUNS.get(tx, run_id)
    return run if run is not None and run.workflow_id == workflow_id else None


def list_runs(tx: Tx, workflow_id: str, page: Page) -> Listing[WorkflowRunRow] | None:
    """Returns a page of a workflow's runs, newest first, and whether more follow.

    Returns None when there is no such workflow.
    """
    if WORKFLOWS.get(tx, workflow_id) is None:
        return None
    return RUNS.list_page(tx, page, _RUNS.c.workflow_id == workflow_id)


def unfinished_runs(tx: Tx) -> list[tuple[WorkflowRow, WorkflowRunRow]]:
    """Returns every tenant's runs that have not ended, with their workflows, oldest first (system work).

    On PostgreSQL this sees every tenant's runs only in a system transaction.
    """
    query = (
        select(*_WORKFLOWS.c, *_RUNS.c)
        .join(_RUNS, (_RUNS.c.tenant_id == _WORKFLOWS.c.tenant_id) & (_RUNS.c.workflow_id == _WORKFLOWS.c.id))
        .where(_RUNS.c.state.in_((RunState.PENDING, RunState.RUNNING)))
        .order_by(_RUNS.c.create_time)
    )
    width = len(_WORKFLOWS.c)
    return [(WORKFLOWS.record(*row[:width]), RUNS.record(*row[width:])) for row in tx.execute(query).all()]
