"""SQL of the agent service. Every query filters by ``tenant_id``."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.agent.models import Agent, Run
from services.kit.db import insert_idempotent


async def create_agent(session: AsyncSession, agent: Agent) -> Agent | None:
    """Inserts an agent, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The agent; None when its ID is taken (nothing is written then).
    """
    rid = agent.request_id

    async def earlier() -> Agent | None:
        return await agent_by_request(session, agent.tenant_id, rid) if rid else None

    return await insert_idempotent(session, agent, earlier)


async def get_agent(session: AsyncSession, tenant_id: str, agent_id: str) -> Agent | None:
    """The tenant's agent, or None."""
    return await session.get(Agent, (tenant_id, agent_id))


async def agent_by_request(session: AsyncSession, tenant_id: str, request_id: str) -> Agent | None:
    """The agent created earlier with this idempotency key, or None."""
    query = select(Agent).where(Agent.tenant_id == tenant_id, Agent.request_id == request_id)
    return (await session.execute(query)).scalar_one_or_none()


async def list_agents(session: AsyncSession, tenant_id: str, offset: int, limit: int) -> list[Agent]:
    """The tenant's agents, newest first."""
    query = (
        select(Agent)
        .where(Agent.tenant_id == tenant_id)
        .order_by(Agent.create_time.desc(), Agent.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def delete_agent(session: AsyncSession, tenant_id: str, agent_id: str) -> bool:
    """Deletes an agent and its runs; False when there was none."""
    await session.execute(delete(Run).where(Run.tenant_id == tenant_id, Run.agent_id == agent_id))
    result = await session.execute(delete(Agent).where(Agent.tenant_id == tenant_id, Agent.id == agent_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def create_run(session: AsyncSession, run: Run) -> Run:
    """Inserts a run, or returns the one an earlier request with its ``request_id`` made."""
    rid = run.request_id

    async def earlier() -> Run | None:
        return await run_by_request(session, run.tenant_id, run.agent_id, rid) if rid else None

    created = await insert_idempotent(session, run, earlier)
    assert created is not None, "run IDs are UUIDs"
    return created


async def save_run(session: AsyncSession, run: Run) -> None:
    """Writes a run's changed fields."""
    await session.merge(run)


async def get_run(session: AsyncSession, tenant_id: str, agent_id: str, run_id: str) -> Run | None:
    """The run of the tenant's agent, or None."""
    run = await session.get(Run, (tenant_id, run_id))
    return run if run is not None and run.agent_id == agent_id else None


async def run_by_request(session: AsyncSession, tenant_id: str, agent_id: str, request_id: str) -> Run | None:
    """The run created earlier with this idempotency key, or None."""
    query = select(Run).where(
        Run.tenant_id == tenant_id, Run.agent_id == agent_id, Run.request_id == request_id
    )
    return (await session.execute(query)).scalar_one_or_none()


async def list_runs(
    session: AsyncSession, tenant_id: str, agent_id: str, offset: int, limit: int
) -> list[Run]:
    """An agent's runs, newest first."""
    query = (
        select(Run)
        .where(Run.tenant_id == tenant_id, Run.agent_id == agent_id)
        .order_by(Run.create_time.desc(), Run.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())
