"""A relay: a background task that drains a transactional outbox, again and again.

An outbox is a table a service writes in the same transaction as the change it
records (audit events, notifications to deliver); the relay delivers its rows
between transactions, so a crash in between delivers a row again and receivers
must be idempotent. One relay runs on every replica; the outbox's own queries make
concurrent relays safe (deleting what was delivered, or claiming rows first).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Relay:
    """Calls ``once`` until it reports nothing done, then waits ``interval_seconds``, until stopped.

    Args:
        name: Names the task and the log lines of failures.
        once: Delivers one batch; returns how many rows it handled (0 when idle).
            An exception is logged and the batch is retried on the next tick.
        interval_seconds: The wait between two idle passes.
    """

    def __init__(self, name: str, once: Callable[[], Awaitable[int]], interval_seconds: float) -> None:
        self.name = name
        self._once = once
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Runs the next pass now rather than at the next tick (after a write that added rows)."""
        self._wake.set()

    async def _forever(self) -> None:
        while True:
            try:
                while await self._once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as error:  # retried on the next tick
                log.warning("relay %s failed: %s", self.name, error)
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def start(self) -> None:
        """Starts the relay in the background."""
        self._task = asyncio.create_task(self._forever(), name=f"relay-{self.name}")

    async def stop(self) -> None:
        """Stops the relay after a last pass; what it did not deliver waits in the outbox."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self._once()
        except Exception as error:
            log.warning("final pass of relay %s failed: %s", self.name, error)
