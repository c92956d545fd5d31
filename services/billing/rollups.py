"""The built-in meters' usage pre-aggregated per 15-minute bucket and group (``usage_rollups``).

``QueryUsage`` of a month of daily windows over a million events reads every event's
``data`` (PostgreSQL: about 3.5 s on this machine, ``benchmark/usage_query.py``); the
field keeps pre-aggregates instead (OpenMeter: ClickHouse materialized views per minute
window, subject and group-by values). Here the built-in meters, whose events the
agent service sends in volume, are added up per tenant, meter, 15-minute bucket (UTC)
and value of each built-in group-by key (:data:`services.billing.plans.BUILT_IN_GROUP_BY`)
in the same transaction as the events (:func:`sums` and :func:`upsert`, called by
:func:`services.billing.store.add_usage_events` with the events it recorded), so a
rollup always equals the sum of its events, duplicates never count, and a query of such
a meter reads at most one row per bucket and group (:func:`query`).

A query takes the rollup when its windows start on quarter hours (every minute-free
window of every IANA zone: offsets are whole quarter hours), it groups and filters by
built-in keys only (not ``subject``) and names no subjects; otherwise it reads the
events. Rollups count events by their ``time`` whenever they arrive, as the period
totals (and so limits and invoices) do; the events' own windows leave out events
recorded more than the built-in meters' late-event grace (35 days) after their window
ended, which the rollup cannot tell apart.
Group-by values are kept as text of at most :data:`MAX_VALUE` characters (strings as
they are, other JSON values as JSON), a missing one as ``""``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import DateTime, Integer, and_, column, func, select, values
from sqlalchemy.dialects import postgresql, sqlite

from services.billing.models import EventRow, UsageRollup, UsageValue
from services.billing.plans import BUILT_IN_GROUP_BY
from services.kit.db import Tx
from services.kit.repository import table_of
from services.kit.timestamps import as_utc

_ROLLUPS = table_of(UsageRollup)
#: The group-by keys a rollup keeps, in column order.
KEYS = tuple(sorted(BUILT_IN_GROUP_BY))
#: The most characters of a group-by value a rollup keeps (its column's width).
MAX_VALUE = 200
BUCKET = dt.timedelta(minutes=15)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_KEY = ["tenant_id", "meter", "bucket_start", *KEYS]


def _upsert(dialect: Any) -> Any:
    statement = dialect.insert(_ROLLUPS)
    return statement.on_conflict_do_update(
        index_elements=[_ROLLUPS.c[name] for name in _KEY],
        set_={
            "quantity": _ROLLUPS.c.quantity + statement.excluded.quantity,
            "event_count": _ROLLUPS.c.event_count + statement.excluded.event_count,
        },
    )


_UPSERT = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}


def bucket_of(instant: dt.datetime) -> dt.datetime:
    """Returns the start of the 15-minute bucket (UTC) holding ``instant``."""
    seconds = (as_utc(instant) - _EPOCH) // dt.timedelta(seconds=1)
    return _EPOCH + dt.timedelta(seconds=seconds - seconds % int(BUCKET.total_seconds()))


def upsert_statement(dialect: str) -> Any:
    """Returns the statement that adds rollup rows to the stored ones (``postgresql`` or ``sqlite``)."""
    return _UPSERT[dialect]


def value_text(value: Any) -> str:
    """Returns a group-by value as a rollup keeps it: text, JSON for other values, ``""`` for none."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text[:MAX_VALUE]


def sums(rows: Sequence[EventRow]) -> list[dict[str, Any]]:
    """Returns what events of built-in meters add to their rollups: a row per rollup, in key order.

    In key order, so concurrent batches of a tenant that upsert them (:func:`upsert`) wait
    for each other rather than deadlock.
    """
    found: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        if not row["meter"]:
            continue
        data = row["data"]
        key = (
            row["tenant_id"],
            row["meter"],
            bucket_of(row["time"]),
            *(value_text(data.get(BUILT_IN_GROUP_BY[k][2:])) for k in KEYS),
        )
        total = found.setdefault(key, [0.0, 0])
        total[0] += row["quantity"]
        total[1] += 1
    return [
        {**dict(zip(_KEY, key, strict=True)), "quantity": q, "event_count": int(n)}
        for key, (q, n) in sorted(found.items())
    ]


def upsert(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
    """Adds :func:`sums` of newly recorded events to the stored rollups, in the caller's transaction."""
    if rows:
        tx.execute(_UPSERT[tx.dialect], rows)


def serves(
    windows: Sequence[tuple[dt.datetime, dt.datetime]], keys: Sequence[str], subjects: Sequence[str]
) -> bool:
    """Whether a built-in meter's query can be answered from the rollups (see the module's docstring)."""
    return (
        not subjects
        and set(keys) <= set(KEYS)
        and all(bucket_of(start) == as_utc(start) for start, _ in windows)
        and (not windows or bucket_of(windows[-1][1]) == as_utc(windows[-1][1]))
    )


def query(
    tx: Tx,
    meter: str,
    windows: Sequence[tuple[dt.datetime, dt.datetime]],
    group_by: Sequence[str],
    filters: Mapping[str, str],
    limit: int,
) -> list[tuple[Any, ...]]:
    """Returns ``(window index, *group values, sum)`` of a built-in meter's rollups, at most ``limit + 1``.

    Group values are None where the events had none, as the events' query gives them.
    """
    spans = (
        values(
            column("idx", Integer),
            column("start", DateTime(timezone=True)),
            column("stop", DateTime(timezone=True)),
            name="windows",
        )
        .data([(i, start, end) for i, (start, end) in enumerate(windows)])
        .cte("windows")
    )
    groups = [func.nullif(_ROLLUPS.c[key], "").label(f"g{i}") for i, key in enumerate(group_by)]
    statement = (
        select(spans.c.idx, *groups, func.sum(_ROLLUPS.c.quantity))
        .select_from(spans)
        .join(
            _ROLLUPS,
            and_(_ROLLUPS.c.bucket_start >= spans.c.start, _ROLLUPS.c.bucket_start < spans.c.stop),
        )
        .where(
            _ROLLUPS.c.tenant_id == tx.tenant_id,
            _ROLLUPS.c.meter == meter,
            *(_ROLLUPS.c[key] == value for key, value in sorted(filters.items())),
        )
        .group_by(spans.c.idx, *groups)
        .limit(limit + 1)
    )
    return [tuple(row) for row in tx.execute(statement).all()]


def values_of(rows: Sequence[tuple[Any, ...]], group_by: Sequence[str]) -> list[UsageValue]:
    """Returns rollup query rows as usage values (unsorted)."""
    return [
        UsageValue(
            window=int(idx),
            value=float(total),
            subject="",
            groups={k: str(v) for k, v in zip(group_by, keys, strict=True) if v is not None},
        )
        for idx, *keys, total in rows
    ]
