"""Evaluation counts per flag, counted in memory and added to the database periodically.

An evaluation must stay a memory read, so it writes nothing: :meth:`UsageCounter.record`
adds one to a counter keyed by tenant, flag, hour, variant and reason (a dict
update, well under a microsecond). Every ``flush_seconds`` the counters are taken
whole and added to ``flag_usage`` in one transaction (:func:`services.flag.store.add_usage`,
an upsert that adds, so replicas' counts sum); counts whose write fails are put
back and written with the next flush, and :meth:`UsageCounter.stop` flushes once
more. A replica that dies loses at most one interval of counts. Reads add the
replica's counts not written yet, those being written included
(:meth:`UsageCounter.pending`), so a replica sees its own evaluations at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from services.flag import store
from services.flag.models import FlagUsageRow
from services.kit.db import Database

log = logging.getLogger(__name__)

HOUR_SECONDS = 3600
#: (tenant, flag key, hour since the epoch, variant, reason).
CountKey = tuple[str, str, int, str, str]


def hour_start(hour: int) -> dt.datetime:
    """Returns the start (UTC) of an hour counted since the epoch."""
    return dt.datetime.fromtimestamp(hour * HOUR_SECONDS, dt.UTC)


class UsageCounter:
    """One replica's evaluation counts not yet in the database.

    Args:
        db: The flag database.
        flush_seconds: How often counts are added to the database.
        clock: The time, in seconds since the epoch (injected by tests).
    """

    def __init__(self, db: Database, flush_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._interval = flush_seconds
        self._clock = clock
        self._counts: dict[CountKey, list[float]] = {}  # key -> [count, last evaluation time]
        self._writing: dict[CountKey, list[float]] = {}  # the counts a flush is writing now
        self._flusher: asyncio.Task[None] | None = None

    def record(self, tenant: str, key: str, variant: str, reason: str) -> None:
        """Counts one evaluation of the tenant's flag ``key`` that served ``variant`` for ``reason``."""
        now = self._clock()
        counted = (tenant, key, int(now // HOUR_SECONDS), variant, reason)
        entry = self._counts.get(counted)
        if entry is None:
            self._counts[counted] = [1, now]
        else:
            entry[0] += 1
            entry[1] = now

    def forget(self, tenant: str, key: str) -> None:
        """Drops the unwritten counts of a flag deleted on this replica (a flag created again starts afresh).

        Counts another replica has not written yet may still arrive; reads leave out counts from before a
        flag's creation (:mod:`services.flag.insight`), except those in the same hour as newer ones.
        """
        for counted in [c for c in self._counts if c[0] == tenant and c[1] == key]:
            del self._counts[counted]

    def pending(self, tenant: str, key: str | None = None) -> list[FlagUsageRow]:
        """Returns the counts not yet written of the tenant's flag ``key`` (None: of all its flags)."""
        return [
            _row(counted, entry)
            for counts in (self._counts, self._writing)
            for counted, entry in counts.items()
            if counted[0] == tenant and (key is None or counted[1] == key)
        ]

    async def flush(self) -> int:
        """Adds the counts so far to the database, in one transaction.

        Returns:
            How many (flag, hour, variant, reason) counts were written.

        Raises:
            Exception: The write failed; the counts are kept for the next flush.
        """
        if self._writing:
            return 0  # a flush is under way (stop() during a background flush)
        taken, self._counts = self._counts, {}
        if not taken:
            return 0
        self._writing = taken
        try:
            await self._db.system(store.add_usage, [_row(counted, entry) for counted, entry in taken.items()])
        except Exception:
            for counted, (count, last) in taken.items():  # counted again since are added to these
                entry = self._counts.setdefault(counted, [0, last])
                entry[0] += count
                entry[1] = max(entry[1], last)
            raise
        finally:
            self._writing = {}
        return len(taken)

    async def start(self) -> None:
        """Flushes every ``flush_seconds`` in the background."""
        self._flusher = asyncio.create_task(self._flush_forever(), name="flag-usage-flusher")

    async def stop(self) -> None:
        """Stops flushing in the background, then flushes once more."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        try:
            await self.flush()
        except Exception as error:
            log.warning("last flag usage flush failed, its counts are lost: %s", error)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database may be briefly away; the counts wait
                log.warning("flag usage flush failed: %s", error)


def _row(counted: CountKey, entry: list[float]) -> FlagUsageRow:
    tenant, key, hour, variant, reason = counted
    return FlagUsageRow(
        tenant_id=tenant,
        flag_key=key,
        hour=hour_start(hour),
        variant=variant,
        reason=reason,
        count=int(entry[0]),
        last_evaluate_time=dt.datetime.fromtimestamp(entry[1], dt.UTC),
    )
