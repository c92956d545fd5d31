"""Usage insight from evaluation counts: a flag's counts over a window, and the stale-flag report.

Counts are the stored ones (``flag_usage``) plus the replica's not yet written
(:meth:`services.flag.usage.UsageCounter.pending`), added together here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.flag.models import FlagRow, FlagUsageRow
from services.kit.timestamps import as_utc

#: The longest window ``GetFlagUsage`` counts.
MAX_WINDOW = dt.timedelta(days=7)
DEFAULT_WINDOW = dt.timedelta(hours=24)
DEFAULT_STALE_DAYS = 30
#: The most flags a stale report names.
MAX_STALE_FLAGS = 1000


class StaleReason(StrEnum):
    """Why a flag is reported stale; ``StaleFlag.Reason.REASON_<value>`` on the wire."""

    NOT_EVALUATED = "NOT_EVALUATED"
    ONE_VARIANT = "ONE_VARIANT"


@dataclass(frozen=True)
class Count:
    """Evaluations in one hour (or a whole window) that served ``variant`` for ``reason``."""

    start: dt.datetime
    variant: str
    reason: str
    count: int


@dataclass
class Usage:
    """A flag's evaluations in a window, per hour and in total, and its last evaluation."""

    counts: list[Count]
    totals: list[Count]
    last_evaluate_time: dt.datetime | None


@dataclass
class Stale:
    """A flag of the stale report."""

    key: str
    reason: StaleReason
    last_evaluate_time: dt.datetime | None
    variant: str = ""
    evaluation_count: int = 0


def floor_hour(moment: dt.datetime) -> dt.datetime:
    """Returns the start of the hour ``moment`` is in."""
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: dt.datetime) -> dt.datetime:
    """Returns the start of the first hour that begins at or after ``moment``."""
    floor = floor_hour(moment)
    return floor if floor == as_utc(moment) else floor + dt.timedelta(hours=1)


def _latest(*moments: dt.datetime | None) -> dt.datetime | None:
    present = [as_utc(moment) for moment in moments if moment is not None]
    return max(present) if present else None


def _current(moment: dt.datetime | None, created: dt.datetime) -> dt.datetime | None:
    """``moment`` unless it is before the flag was created (a count of a deleted flag of the same key)."""
    return None if moment is None or as_utc(moment) < as_utc(created) else as_utc(moment)


def usage(
    rows: Iterable[FlagUsageRow],
    start: dt.datetime,
    end: dt.datetime,
    stored_last: dt.datetime | None,
    created: dt.datetime,
) -> Usage:
    """Adds up a flag's counts in hours ``start`` to before ``end``.

    Counts whose last evaluation came before the flag was created are of a flag deleted before
    (written by a replica after the deletion) and are left out.

    Args:
        rows: Stored and pending counts of the flag (rows outside the window are left out).
        start: The window's first hour.
        end: The hour after the window.
        stored_last: The flag's last stored evaluation, at any time.
        created: When the flag was created.
    """
    hourly: dict[tuple[dt.datetime, str, str], int] = {}
    last = _current(stored_last, created)
    for row in rows:
        if _current(row.last_evaluate_time, created) is None:
            continue
        last = _latest(last, row.last_evaluate_time)
        hour = as_utc(row.hour)
        if start <= hour < end:
            slot = (hour, row.variant, row.reason)
            hourly[slot] = hourly.get(slot, 0) + row.count
    totals: dict[tuple[str, str], int] = {}
    for (_, variant, reason), count in hourly.items():
        totals[(variant, reason)] = totals.get((variant, reason), 0) + count
    return Usage(
        counts=[
            Count(hour, variant, reason, count) for (hour, variant, reason), count in sorted(hourly.items())
        ],
        totals=[
            Count(start, variant, reason, count)
            for (variant, reason), count in sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        ],
        last_evaluate_time=last,
    )


def stale_flags(
    flags: Sequence[FlagRow],
    rows: Iterable[FlagUsageRow],
    last_stored: dict[str, dt.datetime],
    since: dt.datetime,
) -> list[Stale]:
    """Returns the stale flags, in key order.

    A flag created before ``since`` with no evaluation since then is ``NOT_EVALUATED``; a flag
    whose evaluations since then all served one variant is ``ONE_VARIANT``. Counts from before a
    flag was created are left out, as in :func:`usage`.

    Args:
        flags: The tenant's flags.
        rows: Stored and pending counts of the tenant's flags from the hour ``since`` on.
        last_stored: Flag key -> its last stored evaluation.
        since: The start of the days looked back.
    """
    created = {flag.key: flag.create_time for flag in flags}
    counts: dict[str, int] = {}
    variants: dict[str, set[str]] = {}
    last: dict[str, dt.datetime | None] = {
        key: _current(moment, created[key]) for key, moment in last_stored.items() if key in created
    }
    for row in rows:
        if row.flag_key not in created or _current(row.last_evaluate_time, created[row.flag_key]) is None:
            continue  # a count of a deleted flag (of the same key)
        last[row.flag_key] = _latest(last.get(row.flag_key), row.last_evaluate_time)
        if as_utc(row.hour) >= since:
            counts[row.flag_key] = counts.get(row.flag_key, 0) + row.count
            variants.setdefault(row.flag_key, set()).add(row.variant)
    found: list[Stale] = []
    for flag in sorted(flags, key=lambda f: f.key):
        count = counts.get(flag.key, 0)
        served = variants.get(flag.key, set())
        if count == 0 and as_utc(flag.create_time) < since:
            found.append(Stale(flag.key, StaleReason.NOT_EVALUATED, last.get(flag.key)))
        elif count and len(served) == 1 and "" not in served:
            found.append(
                Stale(flag.key, StaleReason.ONE_VARIANT, last.get(flag.key), next(iter(served)), count)
            )
        if len(found) == MAX_STALE_FLAGS:
            break
    return found
