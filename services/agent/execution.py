"""Runs in the background: their stretches of work, leases, cancellation and metering.

A run's work comes in stretches: from ``CreateRun`` until the model answers or a call
needs approval, then again from each ``SubmitToolApprovals``. A stretch runs in a task of
its own on the replica that started it, leased to that replica (:class:`RunLeases`); it
ends by writing its outcome (and its last events) in one transaction that holds only
while the replica still owns the run, then settles its quota hold.

Metering and the hold are kept consistent so that usage counts once: every usage event
goes into the usage outbox with what it meters (:mod:`services.agent.metering`), and the
relay ingests it; the settlement of a stretch's hold carries the same events (same
``source`` and ``id``), and billing records them with the settlement in one transaction,
deduplicated against what the relay delivered before or delivers after. So what a hold
held turns into usage at one instant, and neither path adds what the other added.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import metering, store, threads
from services.agent import tools as catalog
from services.agent.events import LiveRun, RunEvents
from services.agent.models import AgentRevisionRow, MessageRow, RunRow, RunState
from services.agent.peers import Peers
from services.agent.routing import ModelRouter
from services.agent.runner import (
    MAX_TOOL_ROUNDS,
    AgentSpec,
    Checkpoint,
    Decision,
    Outcome,
    RunFailed,
    RunTool,
    run_agent,
)
from services.kit.db import Database
from services.kit.metrics import RunOutcomes
from services.kit.names import new_id
from services.kit.timestamps import utcnow

log = logging.getLogger(__name__)

#: ``(tenant_id, tool_names) -> tools``: the MCP tools among an agent's tools, ready to call.
McpToolResolver = Callable[[str, Sequence[str]], Awaitable[Sequence[RunTool]]]


@dataclass(frozen=True)
class RunLimits:
    """What one run, and one tenant's runs together, may take.

    Attributes:
        timeout_seconds: Deadline of a stretch of a run's work (waiting for approvals does
            not count); past it the run fails with ``RUN_TIMEOUT``.
        max_running: Runs a tenant may have in progress at once, counted in the database
            over every replica; one more is refused with ``TOO_MANY_RUNS``.
        history_tokens: The most estimated tokens of a thread's history a run on it sees
            (see :mod:`services.agent.threads`).
    """

    timeout_seconds: float = 300.0
    max_running: int = 8
    history_tokens: int = 2000


@dataclass(frozen=True)
class RunLeases:
    """How runs in progress are leased to the replica executing them (issue 14, item 8).

    A replica that dies stops renewing its runs' leases; once a lease has expired any
    replica's sweeper fails the run with ``RUN_INTERRUPTED``, and so does a retry of its
    ``CreateRun``. Interrupted runs are failed, not resumed: a run's model replies and
    tool results since its last checkpoint are not kept, so resuming would mean running
    that stretch again, calling its tools (which may act on the world) and the model
    (which is billed) a second time, under the caller's old request. The caller decides,
    with a new ``request_id``. A run waiting for approvals holds no lease: it survives
    any restart, and resumes on the replica that receives the decisions.

    Attributes:
        lease_seconds: How long a lease lasts unless renewed.
        heartbeat_seconds: How often the executor renews it (well under ``lease_seconds``).
        sweep_seconds: How often each replica fails runs whose lease expired; it also
            sweeps once at start-up.
        executor: This replica's ID, written on the runs it executes.
        clock: The time leases are measured in (injected by tests).
    """

    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    sweep_seconds: float = 15.0
    executor: str = ""
    clock: Callable[[], dt.datetime] = utcnow

    def expiry(self) -> dt.datetime:
        """Returns when a lease taken or renewed now expires."""
        return self.clock() + dt.timedelta(seconds=self.lease_seconds)


def stretch_id(run: RunRow) -> str:
    """Returns the ID of a stretch of a run's work (hold and usage): the run's, then one per resumption."""
    return run.id if run.last_sequence == 0 else f"{run.id}-{run.last_sequence}"


class Executor:
    """Starts, follows, cancels and sweeps runs on this replica.

    Args:
        db: The agent database.
        router: Opens every model call on the endpoint that answers it.
        peers: Billing calls.
        limits: Limits of runs.
        leases: Leases of runs in progress.
        events: The runs' events.
        mcp_tools: Resolves an agent's MCP tools for its tenant
            (:func:`services.agent.mcp.resolve_tools`, never raising for a broken server);
            None offers built-in tools only.
        outcomes: Counts each stretch of work's end by the state it wrote (the service's metrics).
    """

    def __init__(
        self,
        db: Database,
        router: ModelRouter,
        peers: Peers,
        limits: RunLimits,
        leases: RunLeases,
        events: RunEvents,
        mcp_tools: McpToolResolver | None = None,
        outcomes: RunOutcomes | None = None,
    ) -> None:
        self._db = db
        self._outcomes = outcomes
        self._mcp_tools = mcp_tools
        self._router = router
        self._peers = peers
        self.limits = limits
        self.leases = leases
        self.events = events
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # A hold outlives the stretch of work it covers (its deadline) by a lease, so that a
        # replica that dies mid-run gives the quota back once its run is swept.
        self.hold_seconds = limits.timeout_seconds + leases.lease_seconds

    @staticmethod
    def hold(revision: AgentRevisionRow) -> dict[str, float]:
        """Returns what a stretch of a run's work may spend at most: its model calls' output tokens.

        A stretch makes at most ``MAX_TOOL_ROUNDS + 1`` model calls of at most
        ``max_output_tokens`` each, so a hold of that many never lets parallel runs overshoot
        the output-token quota. Input tokens are not held (they cannot be known before the
        calls); they are metered when the stretch settles.
        """
        return {"model_output_tokens": revision.max_output_tokens * (MAX_TOOL_ROUNDS + 1)}

    def start(
        self,
        revision: AgentRevisionRow,
        run: RunRow,
        checkpoint: Checkpoint,
        decisions: Mapping[str, Decision] | None = None,
    ) -> LiveRun:
        """Starts a stretch of the run's work in a task of its own, which outlives the caller's request.

        Args:
            revision: The agent revision the run uses.
            run: The run, ``RUNNING`` and leased to this replica.
            checkpoint: Where it stands.
            decisions: The decisions it resumes with, if it waited for approvals.

        Returns:
            Its live events, ``run_started`` first.
        """
        live = self.events.open(run, self.leases.clock)
        live.append(
            run_started=res.RunStarted(
                agent_revision=f"tenants/{run.tenant_id}/agents/{run.agent_id}/revisions/{revision.id}",
                model=checkpoint.model or run.model,  # the model or route asked
                resumed=decisions is not None,
            )
        )
        task = asyncio.create_task(self._execute(revision, live, checkpoint, decisions), name=f"run-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return live

    @staticmethod
    def spec(revision: AgentRevisionRow, run: RunRow, tools: list[RunTool] | None = None) -> AgentSpec:
        """Returns what the agent loop needs of the run's agent revision.

        Args:
            revision: The run's agent revision.
            run: The run.
            tools: Its tools, resolved; None for its built-in ones only.
        """
        return AgentSpec(
            model=run.model,
            instructions=revision.instructions,
            tools=_resolve_tools(revision.tools) if tools is None else tools,
            temperature=revision.temperature,
            max_output_tokens=revision.max_output_tokens,
            tool_choice_required=revision.tool_choice == "TOOL_CHOICE_REQUIRED",
            approval_required=frozenset(revision.approval_required_tools),
        )

    async def _work(
        self,
        revision: AgentRevisionRow,
        run: RunRow,
        checkpoint: Checkpoint,
        live: LiveRun,
        outcome: Outcome,
        decisions: Mapping[str, Decision] | None,
    ) -> Outcome:
        """Resolves the run's tools (its MCP tools asked of their servers now), then runs the agent loop."""
        tools = _resolve_tools(revision.tools)
        if run.tools_enabled and self._mcp_tools is not None:
            tools += await self._mcp_tools(run.tenant_id, revision.tools)
        spec = dataclasses.replace(self.spec(revision, run, tools), model=checkpoint.model or run.model)
        return await run_agent(
            self._router,
            spec,
            checkpoint,
            run.tools_enabled,
            self.limits.timeout_seconds,
            live,
            outcome,
            decisions,
        )

    def cancel_local(self, run_id: str) -> bool:
        """Stops the agent loop of the run if it executes here; its executor then writes it as cancelled.

        Returns:
            Whether it executes here.
        """
        live = self.events.live.get(run_id)
        if live is None:
            return False
        live.stop()
        return True

    async def _execute(
        self,
        revision: AgentRevisionRow,
        live: LiveRun,
        checkpoint: Checkpoint,
        decisions: Mapping[str, Decision] | None,
    ) -> None:
        run = live.run
        # The model or route asked: kept on the checkpoint across approvals (the run's
        # ``model`` is the model that answered by then).
        checkpoint.model = checkpoint.model or run.model
        before = Outcome(
            model=run.model,
            tool_calls=list(run.tool_calls),
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            model_calls=run.model_calls,
        )
        outcome = dataclasses.replace(before, tool_calls=list(before.tool_calls))
        live.work = asyncio.create_task(
            self._work(revision, run, checkpoint, live, outcome, decisions), name=f"run-{run.id}-work"
        )
        stop = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(run, stop), name=f"lease-{run.id}")
        flusher = asyncio.create_task(self.events.keep_flushing(live, stop), name=f"events-{run.id}")
        changes: dict[str, Any] | None
        try:
            await live.work
        except RunFailed as error:
            changes = {"state": RunState.FAILED, "error_reason": error.reason, "error_message": str(error)}
        except asyncio.CancelledError:
            this = asyncio.current_task()
            if this is not None and this.cancelling():
                stop.set()
                self.events.close(live)
                raise  # the service is stopping: the lease runs out and the sweeper fails the run
            # Stopped for CancelRun, or because the run was taken from this replica (then
            # whoever took it wrote its outcome).
            changes = None if live.lost else {**store.CANCELLED, "checkpoint": None, "pending_tool_calls": []}
        except Exception:
            log.exception("run %s failed unexpectedly", run.id)
            changes = {
                "state": RunState.FAILED,
                "error_reason": "RUN_FAILED",
                "error_message": "the run failed unexpectedly",
            }
        else:
            if outcome.checkpoint is not None:
                pending = outcome.checkpoint.pending
                live.append(
                    requires_action=res.RequiresAction(
                        tool_calls=[
                            res.ToolCall(id=c["id"], tool=c["tool"], arguments=c["arguments"])
                            for c in pending
                        ]
                    )
                )
                changes = {
                    "state": RunState.REQUIRES_ACTION,
                    "checkpoint": outcome.checkpoint.to_json(),
                    "pending_tool_calls": [{k: c[k] for k in ("id", "tool", "arguments")} for c in pending],
                }
            else:
                changes = {"state": RunState.SUCCEEDED, "output": outcome.output, "checkpoint": None}
        finally:
            stop.set()
            await asyncio.gather(heartbeat, flusher, return_exceptions=True)
        try:
            written = await self._write_outcome(live, changes, outcome) if changes is not None else None
            if written is not None and self._outcomes is not None:
                self._outcomes.ended(written.state)
            live.end(written)  # followers get the run's end now; the usage is settled next
            await self._settle(live)
        finally:
            self.events.close(live)

    async def _write_outcome(self, live: LiveRun, changes: dict[str, Any], outcome: Outcome) -> RunRow | None:
        """Writes the stretch's outcome and last events; returns the run as written (None: it was taken)."""
        run = live.run
        changes.update(
            model=outcome.model or run.model,
            tool_calls=outcome.tool_calls,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            model_calls=outcome.model_calls,
        )
        if changes["state"] != RunState.REQUIRES_ACTION:
            changes["end_time"] = self.leases.clock()
        appended: list[MessageRow] = []
        if run.thread_id and changes["state"] == RunState.SUCCEEDED:
            run_name = f"tenants/{run.tenant_id}/agents/{run.agent_id}/runs/{run.id}"
            appended = [
                MessageRow(
                    tenant_id=run.tenant_id,
                    thread_id=run.thread_id,
                    id=new_id(),
                    position=0,  # the store gives each its place after the thread's last message
                    role=role,
                    content=content,
                    tool_call=tool_call,
                    run=run_name,
                    create_time=changes["end_time"],
                )
                for role, content, tool_call in threads.exchanged(
                    run.input, outcome.tool_calls, outcome.output
                )
            ]
        counted = (
            outcome.model_calls - run.model_calls,
            outcome.input_tokens - run.input_tokens,
            outcome.output_tokens - run.output_tokens,
        )
        cut_off = metering.cut_off(run, live.events, counted, live.last + 1, self.leases.clock())
        usage = [*live.unstored_usage(), *cut_off]
        finished = await self._db.write(
            run.tenant_id, store.finish_run, run, changes, appended, live.unstored(), usage
        )
        if finished is None:
            log.warning("run %s was taken from this replica before it finished; its outcome is lost", run.id)
        else:
            live.stored = live.last
            live.cut_off = cut_off
        return finished

    async def _settle(self, live: LiveRun) -> None:
        """Settles the stretch's hold with the usage events it recorded (see the module's docstring).

        Those are the usage of the events it stored and, for the run's first stretch, the
        run's own start (its hold held ``agent_runs``). Work it did but could not record
        (its run was taken meanwhile) is not metered, so billing matches what runs record.
        """
        usage = [*live.stored_usage(), *live.cut_off]
        if live.first == 1:
            usage.insert(0, metering.run_started(live.run))
        await self._peers.settle(live.run.tenant_id, stretch_id(live.run), metering.run_name(live.run), usage)

    async def _heartbeat(self, run: RunRow, stop: asyncio.Event) -> None:
        """Renews the run's lease until ``stop``, or until the run is no longer this replica's."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.leases.heartbeat_seconds)
                return
            except TimeoutError:
                pass
            try:
                held = await self._db.write(run.tenant_id, store.renew_lease, run, self.leases.expiry())
            except Exception:  # a database hiccup: the next beat tries again, within the lease
                log.warning("could not renew the lease of run %s", run.id, exc_info=True)
                continue
            if not held:
                return

    async def sweep(self) -> int:
        """Fails every run whose lease expired (its executor died) with ``RUN_INTERRUPTED``.

        Returns:
            How many runs were failed.
        """
        swept = await self._db.system(store.interrupt_expired, self.leases.clock())
        if swept:
            log.warning("failed %d runs whose executor stopped renewing their lease", swept)
            if self._outcomes is not None:
                self._outcomes.ended(RunState.FAILED, swept)
        return swept

    async def start_sweeping(self) -> None:
        """Sweeps once now, then every ``sweep_seconds`` in a task of its own."""
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="run-sweeper")

    async def stop(self) -> None:
        """Stops the sweeper and this replica's runs (their leases run out; another replica fails them)."""
        tasks = [t for t in (self._sweeper, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.leases.sweep_seconds)
            try:
                await self.sweep()
            except Exception:
                log.warning("sweeping expired runs failed; trying again later", exc_info=True)


def _resolve_tools(names: list[str]) -> list[RunTool]:
    """Returns the run's built-in tools by resource name (its MCP tools come from ``Executor.mcp_tools``)."""
    return [catalog.CATALOG[name] for name in names if name in catalog.CATALOG]
