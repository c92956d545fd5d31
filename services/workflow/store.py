"""SQL of the workflow service. Tenant-facing queries filter by ``tenant_id``."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import insert_idempotent
from services.workflow.models import Workflow, WorkflowRun


async def create_workflow(session: AsyncSession, workflow: Workflow) -> Workflow | None:
    """Inserts a workflow, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The workflow; None when its ID is taken (nothing is written then).
    """
    rid = workflow.request_id

    async def earlier() -> Workflow | None:
        return await workflow_by_request(session, workflow.tenant_id, rid) if rid else None

    return await insert_idempotent(session, workflow, earlier)


async def get_workflow(session: AsyncSession, tenant_id: str, workflow_id: str) -> Workflow | None:
    """The tenant's workflow, or None."""
    return await session.get(Workflow, (tenant_id, workflow_id))


async def workflow_by_request(session: AsyncSession, tenant_id: str, request_id: str) -> Workflow | None:
    """The workflow created earlier with this idempotency key, or None."""
    query = select(Workflow).where(Workflow.tenant_id == tenant_id, Workflow.request_id == request_id)
    return (await session.execute(query)).scalar_one_or_none()


async def list_workflows(session: AsyncSession, tenant_id: str, offset: int, limit: int) -> list[Workflow]:
    """The tenant's workflows, newest first."""
    query = (
        select(Workflow)
        .where(Workflow.tenant_id == tenant_id)
        .order_by(Workflow.create_time.desc(), Workflow.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def create_run(session: AsyncSession, run: WorkflowRun) -> WorkflowRun:
    """Inserts a run, or returns the one an earlier request with its ``request_id`` made."""
    rid = run.request_id

    async def earlier() -> WorkflowRun | None:
        return await run_by_request(session, run.tenant_id, run.workflow_id, rid) if rid else None

    created = await insert_idempotent(session, run, earlier)
    assert created is not None, "run IDs are UUIDs"
    return created


async def save_run(session: AsyncSession, run: WorkflowRun) -> None:
    """Writes a run's current state."""
    await session.merge(run)


async def get_run(session: AsyncSession, tenant_id: str, workflow_id: str, run_id: str) -> WorkflowRun | None:
    """The run of the tenant's workflow, or None."""
    run = await session.get(WorkflowRun, (tenant_id, run_id))
    return run if run is not None and run.workflow_id == workflow_id else None


async def run_by_request(
    session: AsyncSession, tenant_id: str, workflow_id: str, request_id: str
) -> WorkflowRun | None:
    """The run created earlier with this idempotency key, or None."""
    query = select(WorkflowRun).where(
        WorkflowRun.tenant_id == tenant_id,
        WorkflowRun.workflow_id == workflow_id,
        WorkflowRun.request_id == request_id,
    )
    return (await session.execute(query)).scalar_one_or_none()


async def list_runs(
    session: AsyncSession, tenant_id: str, workflow_id: str, offset: int, limit: int
) -> list[WorkflowRun]:
    """A workflow's runs, newest first."""
    query = (
        select(WorkflowRun)
        .where(WorkflowRun.tenant_id == tenant_id, WorkflowRun.workflow_id == workflow_id)
        .order_by(WorkflowRun.create_time.desc(), WorkflowRun.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def unfinished_runs(session: AsyncSession) -> list[WorkflowRun]:
    """Runs of every tenant that have not ended, oldest first (resumed at start-up).

    On PostgreSQL this sees every tenant's runs only in a transaction with ``all_tenants``.
    """
    query = (
        select(WorkflowRun)
        .where(WorkflowRun.state.in_(("PENDING", "RUNNING")))
        .order_by(WorkflowRun.create_time)
    )
    return list((await session.execute(query)).scalars())
