"""A run's events: numbered, stored, and followed as they happen.

Every event of a run gets the next ``sequence`` (from 1, no gaps). While a run executes on
this replica its events are also kept in memory (:class:`LiveRun`), so a follower here
sees each one the moment it happens; they are stored in batches (every
``flush_seconds`` while the run produces events, and with its outcome), each batch in a
transaction that also moves ``runs.last_sequence``, puts their usage in the usage
outbox (:mod:`services.agent.metering`) and holds only while the executor still owns
the run. A follower of a run executing elsewhere reads the stored events every
``poll_seconds``.

The last event, ``run_finished``, is not stored: it is made from the ended run itself,
with the sequence after its last stored event, so a run ended by whoever ended it (its
executor, ``CancelRun``, the lease sweeper) gets the same last event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from google.protobuf.duration_pb2 import Duration

from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import metering, store
from services.agent.models import RunEventRow, RunRow, RunState
from services.agent.runner import ModelReply
from services.kit.db import Database
from services.kit.timestamps import to_timestamp
from services.kit.usage import UsageEventRow

log = logging.getLogger(__name__)

#: Events read from the database per query by a follower.
READ_BATCH = 500


def _tool_call(call: Mapping[str, Any]) -> res.ToolCall:
    return res.ToolCall(**{k: call[k] for k in ("id", "tool", "arguments", "result", "failed") if k in call})


class LiveRun:
    """The events of a run executing on this replica, since this stretch of work began.

    It is the runner's :class:`~services.agent.runner.EventSink`.

    Args:
        run: The run as its executor holds it.
        clock: The time events are stamped with.
    """

    def __init__(self, run: RunRow, clock: Callable[[], dt.datetime]) -> None:
        self.run = run
        self.first = run.last_sequence + 1  # the sequence of events[0]
        self.stored = run.last_sequence  # the last sequence written to the database
        self.events: list[res.RunEvent] = []
        self.ended = False
        self.work: asyncio.Task[Any] | None = None  # the agent loop, which stop() cancels
        self.lost = False  # stopped because the run is no longer its executor's: nothing is written
        self.outcome: RunRow | None = None  # the run as the stretch's outcome wrote it, once written
        self.done = asyncio.Event()  # set once the stretch is over, its usage settled too
        # The usage of a model call the stretch cut off, recorded with its outcome (metering.cut_off).
        self.cut_off: list[UsageEventRow] = []
        self._clock = clock
        self._waiters: set[asyncio.Event] = set()

    @property
    def last(self) -> int:
        """The sequence of the newest event."""
        return self.first + len(self.events) - 1

    def append(self, **event: Any) -> res.RunEvent:
        """Adds the event with the next sequence, now, and wakes the followers.

        Args:
            event: One field of ``RunEvent.event`` and its message.
        """
        message = res.RunEvent(sequence=self.last + 1, create_time=to_timestamp(self._clock()), **event)
        self.events.append(message)
        self._wake()
        return message

    def unstored(self) -> list[RunEventRow]:
        """Returns the events not yet written, as rows."""
        return [
            RunEventRow(self.run.tenant_id, self.run.id, e.sequence, e.SerializeToString())
            for e in self.events[self.stored - self.first + 1 :]
        ]

    def unstored_usage(self) -> list[UsageEventRow]:
        """Returns the usage events of the events not yet written (:mod:`services.agent.metering`)."""
        return metering.usage_of_events(self.run, self.events[self.stored - self.first + 1 :])

    def stored_usage(self) -> list[UsageEventRow]:
        """Returns the usage events of this stretch's events written so far."""
        return metering.usage_of_events(self.run, self.events[: self.stored - self.first + 1])

    def stop(self, *, lost: bool = False) -> None:
        """Stops the agent loop, for ``CancelRun`` or because the executor lost the run.

        Args:
            lost: The run is no longer this executor's (whoever took it wrote its outcome);
                otherwise its executor writes it as cancelled.
        """
        self.lost = self.lost or lost
        if self.work is not None:
            self.work.cancel()

    def end(self, outcome: RunRow | None) -> None:
        """Marks the stretch's events over: its outcome was written (``outcome``), or not (None)."""
        self.outcome = outcome
        self.ended = True
        self._wake()

    async def follow(self, after: int) -> AsyncIterator[res.RunEvent]:
        """Yields the events after ``after`` (at least ``first - 1``) as they come, until :meth:`end`."""
        while True:
            start = max(after - self.first + 1, 0)
            for message in self.events[start:]:
                after = message.sequence
                yield message
            if self.ended:
                return
            waiter = asyncio.Event()
            self._waiters.add(waiter)
            try:
                if after == self.last and not self.ended:
                    await waiter.wait()
            finally:
                self._waiters.discard(waiter)

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    # The runner's EventSink.

    def text_delta(self, text: str) -> None:
        """Records a ``text_delta``."""
        self.append(text_delta=res.TextDelta(text=text))

    def model_call(self, reply: ModelReply) -> None:
        """Records a ``model_call``."""
        latency = Duration()
        latency.FromMicroseconds(round(reply.latency * 1e6))
        self.append(
            model_call=res.ModelCall(
                model=reply.model,
                latency=latency,
                input_tokens=reply.input_tokens,
                output_tokens=reply.output_tokens,
                content=reply.content,
                tool_calls=[
                    res.ToolCall(id=c["id"], tool=c["function"], arguments=c["arguments"])
                    for c in reply.tool_calls
                ],
                finish_reason=reply.finish_reason,
                route=reply.route,
                endpoint=reply.endpoint,
                attempts=reply.attempts,
            )
        )

    def tool_call_started(self, call: Mapping[str, Any]) -> None:
        """Records a ``tool_call_started``."""
        self.append(tool_call_started=_tool_call(call))

    def tool_call_finished(self, call: Mapping[str, Any]) -> None:
        """Records a ``tool_call_finished``."""
        self.append(tool_call_finished=_tool_call(call))


class RunEvents:
    """The runs executing on this replica, and followers of any run.

    Args:
        db: The agent database.
        run_to_proto: Maps a run to its resource (for ``run_finished``).
        poll_seconds: How often a follower of a run executing elsewhere reads its events.
        flush_seconds: How often a live run's new events are stored. Followers here get
            each event at once from memory; followers on other replicas see them in
            batches this far apart. A run shorter than this stores its events with its
            outcome only, in one transaction.
        check_seconds: How often an executor without new events asks whether its run
            was cancelled (by ``CancelRun`` on another replica).
    """

    def __init__(
        self,
        db: Database,
        run_to_proto: Callable[[RunRow], res.Run],
        poll_seconds: float = 0.25,
        flush_seconds: float = 0.5,
        check_seconds: float = 0.5,
    ) -> None:
        self._db = db
        self._to_proto = run_to_proto
        self._poll = poll_seconds
        self._flush = flush_seconds
        self._check = check_seconds
        self.live: dict[str, LiveRun] = {}

    def open(self, run: RunRow, clock: Callable[[], dt.datetime]) -> LiveRun:
        """Registers a stretch of work of ``run`` on this replica."""
        live = LiveRun(run, clock)
        self.live[run.id] = live
        return live

    def close(self, live: LiveRun) -> None:
        """Forgets the stretch of work, once it is over (its events ended, its usage settled)."""
        if not live.ended:
            live.end(None)
        if self.live.get(live.run.id) is live:
            del self.live[live.run.id]
        live.done.set()

    async def flush(self, live: LiveRun) -> store.Control:
        """Stores the live run's new events, if its executor still owns the run.

        Returns:
            Whether it does, and whether ``CancelRun`` asked for the run to stop.
        """
        rows, usage = live.unstored(), live.unstored_usage()
        if not rows:
            return await self._db.read(live.run.tenant_id, store.run_control, live.run)
        control = await self._db.write(live.run.tenant_id, store.append_run_events, live.run, rows, usage)
        if control.owned:
            live.stored = rows[-1].sequence
        return control

    async def keep_flushing(self, live: LiveRun, stop: asyncio.Event) -> None:
        """Stores new events every ``flush_seconds`` until ``stop``, and stops the work when told to.

        Every ``flush_seconds`` with new events, or every ``check_seconds`` without, it
        learns whether ``CancelRun`` (on any replica) asked for the run to stop, and
        whether the run is still this executor's (it is not once its lease expired and the
        sweeper failed it); either stops the agent loop here.
        """
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._flush)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            if live.stored == live.last and loop.time() - checked < self._check:
                continue
            checked = loop.time()
            try:
                control = await self.flush(live)
            except Exception:  # a database hiccup: the next flush, or the outcome's write, stores them
                log.warning("could not store the events of run %s", live.run.id, exc_info=True)
                continue
            if not control.owned or control.cancel:
                live.stop(lost=not control.owned)
                return

    def finished_event(self, run: RunRow) -> res.RunEvent:
        """Returns the ``run_finished`` event of an ended run."""
        return res.RunEvent(
            sequence=run.last_sequence + 1,
            create_time=to_timestamp(run.end_time or run.create_time),
            run_finished=self._to_proto(run),
        )

    async def follow(self, run: RunRow, after: int) -> AsyncIterator[res.RunEvent]:
        """Yields the run's events after ``after``, stored ones first, then as they happen.

        Ends after ``run_finished``, or when the run waits for approvals and every event
        up to its ``requires_action`` was sent.
        """
        while True:
            live = self.live.get(run.id)
            if live is not None and after >= live.first - 1:
                async for message in live.follow(after):
                    after = message.sequence
                    yield message
                if live.outcome is None:  # no outcome of its own: whoever took the run wrote it
                    await live.done.wait()
                    continue
                run = live.outcome  # the outcome as written, without reading it back
            else:
                rows = await self._db.read(run.tenant_id, store.run_events, run.id, after, READ_BATCH)
                for row in rows:
                    message = res.RunEvent.FromString(row.event)
                    after = message.sequence
                    yield message
                if len(rows) == READ_BATCH or (live is not None and after < live.first - 1):
                    continue
                stored = await self._db.read(run.tenant_id, store.get_run, run.agent_id, run.id)
                assert stored is not None, "runs are never deleted"
                run = stored
                if after < run.last_sequence or self._executing(run.id):
                    continue
            if run.state == RunState.REQUIRES_ACTION:
                return
            if run.state != RunState.RUNNING:
                if after <= run.last_sequence:
                    yield self.finished_event(run)
                return
            await asyncio.sleep(self._poll)  # executing on another replica

    def _executing(self, run_id: str) -> bool:
        """Whether a stretch of the run's work is under way here, its events not over yet."""
        live = self.live.get(run_id)
        return live is not None and not live.ended

    async def settled(self, run: RunRow) -> RunRow:
        """Returns the run once it is no longer ``RUNNING`` (waits as long as the caller lets it).

        A stretch of work on this replica is waited for until it is over, its usage settled
        too, so that a caller who reads the usage next finds it.
        """
        while True:
            live = self.live.get(run.id)
            if live is not None:
                await live.done.wait()
            stored = await self._db.read(run.tenant_id, store.get_run, run.agent_id, run.id)
            assert stored is not None, "runs are never deleted"
            run = stored
            if run.state != RunState.RUNNING:
                return run
            if run.id not in self.live:
                await asyncio.sleep(self._poll)  # executing on another replica
