"""SQL of the workflow service. Tenant-facing queries filter by ``tenant_id``."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import insert_unique
from services.workflow.models import Workflow, WorkflowRun


async def add_workflow(session: AsyncSession, workflow: Workflow) -> bool:
    """Inserts a workflow; False when its ID is taken (nothing is written then)."""
    return await insert_unique(session, workflow)


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


async def add_run(session: AsyncSession, run: WorkflowRun) -> None:
    """Inserts a run."""
    session.add(run)
    await session.flush()


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
