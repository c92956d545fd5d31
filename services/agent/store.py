"""SQL of the agent service, through the kit's repository. Every query filters by the transaction's tenant."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, delete, func, or_, select, update

from services.agent import metering
from services.agent.models import (
    REVISION_FIELDS,
    USAGE_OUTBOX,
    Agent,
    AgentRevision,
    AgentRevisionRow,
    AgentRow,
    McpServer,
    McpServerRow,
    MessageRow,
    Run,
    RunEvent,
    RunEventRow,
    RunRow,
    RunState,
    Thread,
    ThreadMessage,
    ThreadRow,
)
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Order, Repository
from services.kit.usage import QUANTITY_KEY, USAGE_TYPE_PREFIX, UsageEventRow

AGENTS = Repository(Agent, AgentRow, order=NEWEST_FIRST)
REVISIONS = Repository(AgentRevision, AgentRevisionRow, order=NEWEST_FIRST)
RUNS = Repository(Run, RunRow, order=NEWEST_FIRST)
THREADS = Repository(Thread, ThreadRow, order=NEWEST_FIRST)
MESSAGES = Repository(ThreadMessage, MessageRow, order=(Order("position"),))
EVENTS = Repository(RunEvent, RunEventRow, order=(Order("sequence"),))
MCP_SERVERS = Repository(McpServer, McpServerRow, order=NEWEST_FIRST)
_AGENTS = AGENTS.table
_MESSAGES = MESSAGES.table
_REVISIONS = REVISIONS.table
_RUNS = RUNS.table
_EVENTS = EVENTS.table
_METER = USAGE_OUTBOX.insert()


def _meter(tx: Tx, usage: Sequence[UsageEventRow]) -> None:
    """Puts usage events in the usage outbox, in the caller's transaction (:mod:`services.agent.metering`)."""
    if usage:
        tx.execute(_METER, list(usage))


#: The run's counter of each built-in meter its model calls add to.
_COUNTERS = {
    "model_calls": "model_calls",
    "model_input_tokens": "input_tokens",
    "model_output_tokens": "output_tokens",
}


def _counted(usage: Sequence[UsageEventRow]) -> dict[str, Any]:
    """Returns what the model calls among ``usage`` add to a run's counters, as column updates."""
    added: dict[str, int] = {}
    for event in usage:
        counter = _COUNTERS.get(event["type"].removeprefix(USAGE_TYPE_PREFIX))
        if counter is not None:
            added[counter] = added.get(counter, 0) + int(event["data"][QUANTITY_KEY])
    return {counter: _RUNS.c[counter] + n for counter, n in added.items()}


class AgentGone(Exception):
    """The agent a run was about to start for has been deleted (nothing was written)."""


def revision_of(agent: AgentRow) -> AgentRevisionRow:
    """Returns the agent's current revision, made from its row (the agent holds its current fields)."""
    assert agent.revision_create_time is not None, "every agent has a revision"
    return AgentRevisionRow(
        tenant_id=agent.tenant_id,
        agent_id=agent.id,
        id=agent.revision_id,
        **{name: getattr(agent, name) for name in REVISION_FIELDS},
        create_time=agent.revision_create_time,
    )


def get_agent(tx: Tx, agent_id: str, *, lock: bool = False) -> AgentRow | None:
    """Returns the tenant's agent, or None when there is none or it was deleted."""
    agent = AGENTS.get(tx, agent_id, lock=lock)
    return agent if agent is not None and agent.delete_time is None else None


def create_agent(tx: Tx, agent: AgentRow) -> AgentRow | None:
    """Inserts an agent and its first revision, or returns the agent an earlier request made.

    An earlier request is one with the same ``request_id``.

    Returns:
        The agent; None when its ID is taken, also by a deleted agent (nothing is written then).
    """
    created = AGENTS.create(tx, agent)
    if created is agent:
        REVISIONS.insert(tx, revision_of(agent))
    return created


def revise_agent(tx: Tx, agent: AgentRow, revision: AgentRevisionRow) -> AgentRow | None:
    """Adds ``revision`` to the agent and makes it the agent's current configuration.

    Args:
        tx: The unit of work, in which ``agent`` was read locked.
        agent: The agent as read.
        revision: Its new revision.

    Returns:
        The agent as updated; None when the agent has a revision with ``revision.id``
        already (nothing is written then; retry with another ID).
    """
    if not REVISIONS.insert(tx, revision):
        return None
    changes = {name: getattr(revision, name) for name in REVISION_FIELDS}
    updated = AGENTS.update(
        tx,
        (agent.id,),
        {**changes, "revision_id": revision.id, "revision_create_time": revision.create_time},
    )
    assert updated is not None, "the agent was read locked in this transaction"
    return updated


def list_agents(tx: Tx, page: Page) -> Listing[AgentRow]:
    """Returns a page of the tenant's agents, newest first, and whether more follow (deleted ones not)."""
    return AGENTS.list_page(tx, page, _AGENTS.c.delete_time.is_(None))


def delete_agent(tx: Tx, agent_id: str, now: dt.datetime) -> bool:
    """Marks an agent deleted, keeping its row for its runs and revisions; False when there was none."""
    statement = (
        update(_AGENTS)
        .where(_AGENTS.c.tenant_id == tx.tenant_id, _AGENTS.c.id == agent_id, _AGENTS.c.delete_time.is_(None))
        .values(delete_time=now)
    )
    deleted = tx.execute(statement).rowcount == 1
    tx.changed |= deleted
    return deleted


def get_revision(tx: Tx, agent_id: str, revision_id: str) -> AgentRevisionRow | None:
    """Returns a revision of the tenant's agent (also of a deleted one), or None."""
    return REVISIONS.get(tx, agent_id, revision_id)


def list_revisions(tx: Tx, agent_id: str, page: Page) -> Listing[AgentRevisionRow] | None:
    """Returns a page of an agent's revisions, newest first; None when the agent never existed."""
    if AGENTS.get(tx, agent_id) is None:
        return None
    return REVISIONS.list_page(tx, page, _REVISIONS.c.agent_id == agent_id)


def _lock_tenant_runs(tx: Tx) -> None:
    """Serializes the tenant's run starts until the transaction ends (PostgreSQL).

    A transaction-scoped advisory lock on the tenant, so that replicas counting the
    tenant's runs in progress at once cannot both admit one more. SQLite serializes every
    write transaction already.
    """
    tx.lock_tenant("agent.runs")


def _running_count(tx: Tx, now: dt.datetime) -> ScalarSelect[int]:
    """Counts the tenant's runs in progress: ``RUNNING`` with a lease unexpired at ``now``."""
    return (
        select(func.count())
        .where(
            _RUNS.c.tenant_id == tx.tenant_id,
            _RUNS.c.state == RunState.RUNNING,
            _RUNS.c.lease_expire_time >= now,
        )
        .scalar_subquery()
    )


class TooManyRuns(Exception):
    """The tenant has as many runs in progress as it may (nothing was written)."""


def start_run(tx: Tx, run: RunRow, max_running: int) -> RunRow:
    """Inserts a new run, or returns the run an earlier request with the same ``request_id`` made.

    The run is inserted first (an earlier request's row wins on its ``request_id``), then
    one query counts the tenant's runs in progress, the new one included, and checks that
    the agent was not deleted; either check failing rolls the insert back. The tenant's
    advisory lock, taken first, keeps two replicas from both admitting one run too many.
    A new run is metered (``agent_runs``, :func:`metering.run_started`) in the same
    transaction.

    Args:
        tx: The unit of work.
        run: The run, in ``RUNNING``.
        max_running: The most runs the tenant may have in progress.

    Returns:
        The new run, or the earlier request's.

    Raises:
        AgentGone: The run's agent was deleted since it was read.
        TooManyRuns: The tenant has ``max_running`` runs in progress already.
    """
    _lock_tenant_runs(tx)
    created = RUNS.create(tx, run)
    assert created is not None, "run IDs are UUIDs"
    if created is not run:
        return created
    running = _running_count(tx, run.create_time)
    alive = (
        select(_AGENTS.c.id)
        .where(
            _AGENTS.c.tenant_id == tx.tenant_id, _AGENTS.c.id == run.agent_id, _AGENTS.c.delete_time.is_(None)
        )
        .exists()
    )
    in_progress, agent_alive = tx.execute(select(running, alive)).one()
    if not agent_alive:
        raise AgentGone(run.agent_id)
    if in_progress > max_running:
        raise TooManyRuns(max_running)
    _meter(tx, [metering.run_started(created)])
    return created


def _lease_expired(now: dt.datetime) -> ColumnElement[bool]:
    """Runs in progress whose executor stopped renewing their lease (or never had one)."""
    return and_(
        _RUNS.c.state == RunState.RUNNING,
        or_(_RUNS.c.lease_expire_time.is_(None), _RUNS.c.lease_expire_time < now),
    )


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

    What the runs recorded was metered as they recorded it (:mod:`services.agent.metering`).

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
    assert stored is not None, "runs are never deleted"
    return stored


@dataclasses.dataclass(frozen=True)
class RunSubject:
    """What a new run starts from, read in one transaction.

    Attributes:
        agent: The agent; None when there is none or it was deleted (then nothing else is read).
        revision: The revision to run: the pinned one, or the agent's current one; None
            when the pinned revision does not exist.
        earlier: The run an earlier request with the same ``request_id`` made, or None.
    """

    agent: AgentRow | None
    revision: AgentRevisionRow | None = None
    earlier: RunRow | None = None
    thread: ThreadRow | None = None
    history: list[MessageRow] = dataclasses.field(default_factory=list)


def run_subject(
    tx: Tx,
    agent_id: str,
    revision_id: str | None,
    request_id: str | None,
    thread_id: str | None = None,
    history_limit: int = 500,
) -> RunSubject:
    """Returns the agent, the revision a run of it uses, the run an earlier request made and the thread.

    Args:
        tx: The unit of work.
        agent_id: The agent.
        revision_id: The pinned revision; None for the agent's current one.
        request_id: The run's idempotency key, if any.
        thread_id: The thread the run continues, if any; its newest ``history_limit``
            messages are read, oldest first, into ``history``.
        history_limit: The most messages of the thread read.
    """
    agent = get_agent(tx, agent_id)
    if agent is None:
        return RunSubject(None)
    earlier = None
    if request_id is not None:
        earlier = RUNS.find(tx, _RUNS.c.agent_id == agent_id, _RUNS.c.request_id == request_id)
    revision: AgentRevisionRow | None
    if revision_id is None or revision_id == agent.revision_id:
        revision = revision_of(agent)
    else:
        revision = REVISIONS.get(tx, agent_id, revision_id)
    thread, history = None, []
    if thread_id is not None and earlier is None:
        thread = THREADS.get(tx, thread_id)
        if thread is not None:
            history = recent_messages(tx, thread_id, history_limit)
    return RunSubject(agent, revision, earlier, thread, history)


def get_thread(tx: Tx, thread_id: str) -> ThreadRow | None:
    """Returns the tenant's thread, or None."""
    return THREADS.get(tx, thread_id)


def create_thread(tx: Tx, thread: ThreadRow) -> ThreadRow | None:
    """Inserts a thread, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The thread; None when its ID is taken (nothing is written then).
    """
    return THREADS.create(tx, thread)


def list_threads(tx: Tx, page: Page) -> Listing[ThreadRow]:
    """Returns a page of the tenant's threads, newest first, and whether more follow."""
    return THREADS.list_page(tx, page)


def delete_thread(tx: Tx, thread_id: str) -> bool:
    """Deletes a thread and its messages; False when there was none."""
    tx.execute(
        delete(_MESSAGES).where(_MESSAGES.c.tenant_id == tx.tenant_id, _MESSAGES.c.thread_id == thread_id)
    )
    return THREADS.delete(tx, thread_id)


def list_messages(tx: Tx, thread_id: str, page: Page) -> Listing[MessageRow] | None:
    """Returns a page of a thread's messages, oldest first; None when there is no such thread."""
    if THREADS.get(tx, thread_id) is None:
        return None
    return MESSAGES.list_page(tx, page, _MESSAGES.c.thread_id == thread_id)


def recent_messages(tx: Tx, thread_id: str, limit: int) -> list[MessageRow]:
    """Returns the newest ``limit`` messages of the tenant's thread, oldest first."""
    query = (
        select(*_MESSAGES.c)
        .where(_MESSAGES.c.tenant_id == tx.tenant_id, _MESSAGES.c.thread_id == thread_id)
        .order_by(_MESSAGES.c.position.desc())
        .limit(limit)
    )
    return MESSAGES.records(tx.execute(query).all()[::-1])


def append_messages(tx: Tx, thread_id: str, messages: Sequence[MessageRow], now: dt.datetime) -> bool:
    """Appends messages to the tenant's thread, after its last one, in order.

    The thread is locked first, so that runs finishing at once on one thread append
    one after the other; each message's ``position`` is replaced with its place.

    Returns:
        False when there is no such thread (it was deleted; nothing is written).
    """
    if THREADS.get(tx, thread_id, lock=True) is None:
        return False
    last = tx.execute(
        select(func.max(_MESSAGES.c.position)).where(
            _MESSAGES.c.tenant_id == tx.tenant_id, _MESSAGES.c.thread_id == thread_id
        )
    ).scalar_one()
    start = 0 if last is None else int(last) + 1
    rows = [MESSAGES.values(dataclasses.replace(m, position=start + i)) for i, m in enumerate(messages)]
    MESSAGES.insert_many(tx, rows)
    THREADS.update(tx, (thread_id,), {"update_time": now})
    return True


def _owned(tx: Tx, run: RunRow) -> ColumnElement[bool]:
    """The tenant's run, still ``RUNNING`` on the executor that started this stretch of its work."""
    return and_(
        _RUNS.c.tenant_id == tx.tenant_id,
        _RUNS.c.id == run.id,
        _RUNS.c.executor == run.executor,
        _RUNS.c.state == RunState.RUNNING,
    )


@dataclasses.dataclass(frozen=True)
class Control:
    """What an executor learns of its run when it stores events or checks in.

    Attributes:
        owned: The run is still ``RUNNING`` on this executor.
        cancel: ``CancelRun`` asked for it to stop.
    """

    owned: bool
    cancel: bool = False


def append_run_events(
    tx: Tx, run: RunRow, events: Sequence[RunEventRow], usage: Sequence[UsageEventRow] = ()
) -> Control:
    """Stores a batch of the run's events and their usage if its executor still owns the run.

    Args:
        tx: The unit of work.
        run: The run as this stretch of work started.
        events: The events.
        usage: Their usage events (:func:`metering.usage_of_events`), put in the usage
            outbox; the run's model call and token counters grow by their model calls,
            so the run records what it was metered for even if it never finishes.

    Returns:
        Whether it still owns the run (nothing is written when not) and whether its
        cancellation was asked for.
    """
    statement = (
        update(_RUNS)
        .where(_owned(tx, run))
        .values(last_sequence=events[-1].sequence, **_counted(usage))
        .returning(_RUNS.c.cancel_time)
    )
    row = tx.execute(statement).first()
    if row is None:
        return Control(owned=False)
    EVENTS.insert_many(tx, [EVENTS.values(e) for e in events])
    _meter(tx, usage)
    return Control(owned=True, cancel=row.cancel_time is not None)


def run_control(tx: Tx, run: RunRow) -> Control:
    """Returns whether the executor still owns the run and whether its cancellation was asked for."""
    row = tx.execute(select(_RUNS.c.cancel_time).where(_owned(tx, run))).first()
    return Control(owned=False) if row is None else Control(owned=True, cancel=row.cancel_time is not None)


def run_events(tx: Tx, run_id: str, after: int, limit: int) -> list[RunEventRow]:
    """Returns the run's stored events after sequence ``after``, in order, at most ``limit``."""
    return EVENTS.find_all(tx, _EVENTS.c.run_id == run_id, _EVENTS.c.sequence > after, limit=limit)


def finish_run(
    tx: Tx,
    run: RunRow,
    changes: Mapping[str, Any],
    messages: Sequence[MessageRow] = (),
    events: Sequence[RunEventRow] = (),
    usage: Sequence[UsageEventRow] = (),
) -> RunRow | None:
    """Writes the outcome of a stretch of a run's work, if its executor still holds it, and ends its lease.

    The usage of ``events`` goes into the usage outbox in the same transaction
    (:mod:`services.agent.metering`).

    Args:
        tx: The unit of work.
        run: The run as this stretch of work started.
        changes: Its outcome, column name to value (its ``state`` is final, or
            ``REQUIRES_ACTION`` with its checkpoint).
        messages: What it appends to its thread (``run.thread_id``), in the same
            transaction; nothing is appended when the thread was deleted.
        events: Its events not yet stored.
        usage: Their usage events (:func:`metering.usage_of_events`).

    Returns:
        The run with ``changes`` applied; None when the run is no longer this executor's
        (cancelled, or failed as interrupted meanwhile); nothing is written then.
    """
    values = {**changes, "lease_expire_time": None}
    if events:
        values["last_sequence"] = events[-1].sequence
    row = tx.execute(update(_RUNS).where(_owned(tx, run)).values(**values).returning(*_RUNS.c)).first()
    if row is None:
        return None
    EVENTS.insert_many(tx, [EVENTS.values(e) for e in events])
    if messages and run.thread_id:
        append_messages(tx, run.thread_id, messages, changes.get("end_time") or run.create_time)
    _meter(tx, usage)
    return RUNS.record(*row)


CANCELLED = {
    "state": RunState.CANCELLED,
    "error_reason": "RUN_CANCELLED",
    "error_message": "the run was cancelled",
}


def cancel_run(tx: Tx, agent_id: str, run_id: str, now: dt.datetime) -> RunRow | None:
    """Cancels the tenant's run: one waiting for approvals at once, one running through its executor.

    A running run gets ``cancel_time``: its executor, which alone writes its events,
    stops it and writes it as cancelled (or the lease sweeper fails it, if the executor
    died). An ended run is left as it is.

    Returns:
        The run as stored afterwards; None when there is no such run.
    """
    mine = and_(_RUNS.c.tenant_id == tx.tenant_id, _RUNS.c.id == run_id, _RUNS.c.agent_id == agent_id)
    tx.execute(
        update(_RUNS)
        .where(mine, _RUNS.c.state == RunState.REQUIRES_ACTION)
        .values(**CANCELLED, end_time=now, checkpoint=None, pending_tool_calls=[], cancel_time=now)
    )
    tx.execute(
        update(_RUNS)
        .where(mine, _RUNS.c.state == RunState.RUNNING, _RUNS.c.cancel_time.is_(None))
        .values(cancel_time=now)
    )
    return get_run(tx, agent_id, run_id)


def resume_run(
    tx: Tx,
    run: RunRow,
    executor: str,
    now: dt.datetime,
    lease_until: dt.datetime,
    request_id: str | None,
    max_running: int,
) -> RunRow | None:
    """Moves a run waiting for approvals back to ``RUNNING`` on ``executor``.

    Takes the tenant's lock and counts its runs in progress, as :func:`start_run` does.

    Returns:
        The resumed run; None when it no longer waits for approvals (nothing is written).

    Raises:
        TooManyRuns: The tenant has ``max_running`` runs in progress already (nothing is written).
    """
    _lock_tenant_runs(tx)
    row = tx.execute(
        update(_RUNS)
        .where(
            _RUNS.c.tenant_id == tx.tenant_id,
            _RUNS.c.id == run.id,
            _RUNS.c.state == RunState.REQUIRES_ACTION,
            _RUNS.c.last_sequence == run.last_sequence,
        )
        .values(
            state=RunState.RUNNING,
            executor=executor,
            lease_expire_time=lease_until,
            approval_request_id=request_id,
            pending_tool_calls=[],
        )
        .returning(*_RUNS.c)
    ).first()
    if row is None:
        return None
    if tx.execute(select(_running_count(tx, now))).scalar_one() > max_running:
        raise TooManyRuns(max_running)
    return RUNS.record(*row)


def get_run(tx: Tx, agent_id: str, run_id: str) -> RunRow | None:
    """Returns the run of the tenant's agent, or None."""
    run = RUNS.get(tx, run_id)
    return run if run is not None and run.agent_id == agent_id else None


def list_runs(tx: Tx, agent_id: str, page: Page) -> Listing[RunRow] | None:
    """Returns a page of an agent's runs, newest first, and whether more follow.

    Returns None when the agent never existed; a deleted agent's runs are listed.
    """
    if AGENTS.get(tx, agent_id) is None:
        return None
    return RUNS.list_page(tx, page, _RUNS.c.agent_id == agent_id)


def create_mcp_server(tx: Tx, server: McpServerRow) -> McpServerRow | None:
    """Inserts an MCP server, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The server; None when its ID is taken (nothing is written then).
    """
    return MCP_SERVERS.create(tx, server)


def get_mcp_server(tx: Tx, server_id: str, *, lock: bool = False) -> McpServerRow | None:
    """Returns the tenant's MCP server, or None."""
    return MCP_SERVERS.get(tx, server_id, lock=lock)


def get_mcp_servers(tx: Tx, server_ids: Sequence[str]) -> list[McpServerRow]:
    """Returns those of the tenant's MCP servers whose IDs are in ``server_ids``, newest first."""
    if not server_ids:
        return []
    return MCP_SERVERS.find_all(tx, MCP_SERVERS.table.c.id.in_(sorted(set(server_ids))))


def all_mcp_servers(tx: Tx, limit: int) -> list[McpServerRow]:
    """Returns the tenant's MCP servers in the catalog's order (by ID), at most ``limit``."""
    servers = MCP_SERVERS.find_all(tx, limit=limit)
    return sorted(servers, key=lambda server: server.id)


def list_mcp_servers(tx: Tx, page: Page) -> Listing[McpServerRow]:
    """Returns a page of the tenant's MCP servers, newest first, and whether more follow."""
    return MCP_SERVERS.list_page(tx, page)


def update_mcp_server(tx: Tx, server_id: str, values: Mapping[str, Any]) -> McpServerRow | None:
    """Sets ``values`` (column name to value) on the tenant's MCP server; None when there is none."""
    return MCP_SERVERS.update(tx, (server_id,), values)


def delete_mcp_server(tx: Tx, server_id: str) -> bool:
    """Deletes the tenant's MCP server; False when there was none."""
    return MCP_SERVERS.delete(tx, server_id)
