"""SQL of the agent service, through the kit's repository. Every query filters by the transaction's tenant."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text, update

from services.agent.models import Agent, AgentRow, Run, RunRow, RunState
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Repository

AGENTS = Repository(Agent, AgentRow, order=NEWEST_FIRST)
RUNS = Repository(Run, RunRow, order=NEWEST_FIRST)
_RUNS = RUNS.table


def get_agent(tx: Tx, agent_id: str) -> AgentRow | None:
    """Returns the tenant's agent, or None."""
    return AGENTS.get(tx, agent_id)


def create_agent(tx: Tx, agent: AgentRow) -> AgentRow | None:
    """Inserts an agent, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The agent; None when its ID is taken (nothing is written then).
    """
    return AGENTS.create(tx, agent)


def list_agents(tx: Tx, page: Page) -> Listing[AgentRow]:
    """Returns a page of the tenant's agents, newest first, and whether more follow."""
    return AGENTS.list_page(tx, page)


def delete_agent(tx: Tx, agent_id: str) -> bool:
    """Deletes an agent and its runs; False when there was none."""
    tx.execute(delete(_RUNS).where(_RUNS.c.tenant_id == tx.tenant_id, _RUNS.c.agent_id == agent_id))
    return AGENTS.delete(tx, agent_id)


def _lock_tenant_runs(tx: Tx) -> None:
    """Serializes the tenant's run starts until the transaction ends (PostgreSQL).

    A transaction-scoped advisory lock on the tenant, so that replicas counting the
    tenant's runs in progress at once cannot both admit one more. SQLite serializes every
    write transaction already.
    """
    if tx.dialect == "postgresql":
        tx.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('agent.runs:' || :tenant))"), {"tenant": tx.tenant_id}
        )


def start_run(tx: Tx, run: RunRow, max_running: int) -> RunRow | None:
    """Inserts a new run, or returns the run an earlier request with the same ``request_id`` made.

    Args:
        tx: The unit of work.
        run: The run, in ``RUNNING``.
        max_running: The most runs the tenant may have in progress; the new run is not
            inserted when this many are.

    Returns:
        The new or earlier run; None when the tenant has ``max_running`` runs in progress.

    Raises:
        IntegrityError: The run's agent does not exist (any more): the runs' foreign key
            to their agent refuses the row, so no read of the agent is needed here.
    """
    _lock_tenant_runs(tx)
    if run.request_id is not None:
        earlier = RUNS.find(tx, _RUNS.c.agent_id == run.agent_id, _RUNS.c.request_id == run.request_id)
        if earlier is not None:
            return earlier
    if count_running(tx, run.create_time) >= max_running:
        return None
    created = RUNS.create(tx, run)
    assert created is not None, "run IDs are UUIDs"
    return created


def _lease_expired(now: dt.datetime) -> ColumnElement[bool]:
    """Runs in progress whose executor stopped renewing their lease (or never had one)."""
    return and_(
        _RUNS.c.state == RunState.RUNNING,
        or_(_RUNS.c.lease_expire_time.is_(None), _RUNS.c.lease_expire_time < now),
    )


def count_running(tx: Tx, now: dt.datetime) -> int:
    """Returns how many of the tenant's runs are in progress with a live lease at ``now``."""
    query = select(func.count()).where(
        _RUNS.c.tenant_id == tx.tenant_id,
        _RUNS.c.state == RunState.RUNNING,
        _RUNS.c.lease_expire_time >= now,
    )
    return int(tx.execute(query).scalar_one())


def renew_lease(tx: Tx, run: RunRow, until: dt.datetime) -> bool:
    """Extends the lease of a run its executor still holds; False when it no longer does."""
    statement = (
        update(_RUNS)
        .where(
            _RUNS.c.tenant_id == tx.tenant_id,
            _RUNS.c.id == run.id,
            _RUNS.c.executor == run.executor,
            _RUNS.c.state == RunState.RUNNING,
        )
        .values(lease_expire_time=until)
    )
    return tx.execute(statement).rowcount == 1


INTERRUPTED = {
    "state": RunState.FAILED,
    "error_reason": "RUN_INTERRUPTED",
    "error_message": "the run was interrupted: the service executing it stopped before it finished; "
    "start it again with a new request_id",
}


def interrupt_expired(tx: Tx, now: dt.datetime) -> int:
    """Fails every run, of every tenant, whose lease expired before ``now`` (system work).

    Returns:
        How many runs were failed with ``RUN_INTERRUPTED``.
    """
    statement = (
        update(_RUNS).where(_lease_expired(now)).values(**INTERRUPTED, end_time=now, lease_expire_time=None)
    )
    return int(tx.execute(statement).rowcount)


def interrupt_if_expired(tx: Tx, run: RunRow, now: dt.datetime) -> RunRow:
    """Fails the tenant's run with ``RUN_INTERRUPTED`` when its lease expired; returns it as stored."""
    tx.execute(
        update(_RUNS)
        .where(_RUNS.c.tenant_id == tx.tenant_id, _RUNS.c.id == run.id, _lease_expired(now))
        .values(**INTERRUPTED, end_time=now, lease_expire_time=None)
    )
    stored = RUNS.get(tx, run.id)
    assert stored is not None, "runs are deleted only with their agent"
    return stored


def earlier_run(tx: Tx, agent_id: str, request_id: str) -> tuple[AgentRow | None, RunRow | None]:
    """Returns the agent and the run an earlier request with this idempotency key made (or None)."""
    agent = AGENTS.get(tx, agent_id)
    if agent is None:
        return None, None
    return agent, RUNS.find(tx, _RUNS.c.agent_id == agent_id, _RUNS.c.request_id == request_id)


def finish_run(tx: Tx, run: RunRow, changes: Mapping[str, Any]) -> RunRow | None:
    """Writes a run's outcome, if its executor still holds it, and ends its lease.

    Returns:
        The run with ``changes`` applied; None when the run is no longer this executor's
        (its lease expired and it was failed as interrupted meanwhile); nothing is written then.
    """
    values = {**changes, "lease_expire_time": None}
    statement = (
        update(_RUNS)
        .where(
            _RUNS.c.tenant_id == tx.tenant_id,
            _RUNS.c.id == run.id,
            _RUNS.c.executor == run.executor,
            _RUNS.c.state == RunState.RUNNING,
        )
        .values(**values)
    )
    if tx.execute(statement).rowcount != 1:
        return None
    return dataclasses.replace(run, **values)


def get_run(tx: Tx, agent_id: str, run_id: str) -> RunRow | None:
    """Returns the run of the tenant's agent, or None."""
    run = RUNS.get(tx, run_id)
    return run if run is not None and run.agent_id == agent_id else None


def list_runs(tx: Tx, agent_id: str, page: Page) -> Listing[RunRow] | None:
    """Returns a page of an agent's runs, newest first, and whether more follow; None without the agent."""
    if AGENTS.get(tx, agent_id) is None:
        return None
    return RUNS.list_page(tx, page, _RUNS.c.agent_id == agent_id)
