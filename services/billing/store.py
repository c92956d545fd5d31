"""SQL of the billing service. Every usage query filters by the transaction's tenant.

Usage events and the running totals they add to are written in one transaction,
so a total always equals the sum of its period's events, and duplicates (an
event whose ``(tenant, source, id)`` is recorded already) add nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, column, func, select, table
from sqlalchemy.dialects import postgresql, sqlite

from services.billing.models import MeterTotal, UsageEvent, UsageTotal
from services.billing.plans import period_of
from services.kit.calls import CURRENT_RPC
from services.kit.db import Tx
from services.kit.repository import table_of
from services.kit.timestamps import as_utc

_EVENTS = table_of(UsageEvent)
_TOTALS = table_of(UsageTotal)


def _insert_events(dialect: Any) -> Any:
    return (
        dialect.insert(_EVENTS)
        .on_conflict_do_nothing()
        .returning(_EVENTS.c.meter, _EVENTS.c.quantity, _EVENTS.c.time)
    )


def _add_totals(dialect: Any) -> Any:
    statement = dialect.insert(_TOTALS)
    return statement.on_conflict_do_update(
        index_elements=[_TOTALS.c.tenant_id, _TOTALS.c.meter, _TOTALS.c.period_start],
        set_={
            "quantity": _TOTALS.c.quantity + statement.excluded.quantity,
            "event_count": _TOTALS.c.event_count + statement.excluded.event_count,
        },
    )


#: The session's staging table on PostgreSQL, made on each new connection
#: (:meth:`services.kit.db.Database.session_setup`): a batch is copied into it, then moved.
BATCH_TABLE = "usage_event_batch"
BATCH_TABLE_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {BATCH_TABLE} (LIKE usage_events) ON COMMIT DELETE ROWS"
)
_BATCH = table(BATCH_TABLE, *(column(c.key) for c in _EVENTS.columns))
_COLUMNS = [c.key for c in _EVENTS.columns]
# The binary COPY wire types of usage_events' columns, in order.
_COPY_TYPES = {"VARCHAR": "text", "FLOAT": "float8", "TIMESTAMP WITH TIME ZONE": "timestamptz"}
_BATCH_TYPES = [
    _COPY_TYPES[c.type.compile(dialect=postgresql.dialect()).split("(")[0]] for c in _EVENTS.columns
]
_COPY = f"COPY {BATCH_TABLE} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def _move_batch() -> Any:
    """The one statement that moves a copied batch of the transaction's tenant into the events.

    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` inserts the new events; a
    second data-modifying CTE adds exactly those to their periods' totals
    (``date_trunc('month')`` in UTC, the billing period of :func:`period_of`); the
    statement returns how many were new. PostgreSQL runs every data-modifying CTE to
    completion, read or not (PostgreSQL docs, "WITH Queries").
    """
    inserted = (
        postgresql.insert(_EVENTS)
        .from_select(_COLUMNS, select(*_BATCH.c).where(_BATCH.c.tenant_id == bindparam("tenant_id")))
        .on_conflict_do_nothing()
        .returning(_EVENTS.c.tenant_id, _EVENTS.c.meter, _EVENTS.c.quantity, _EVENTS.c.time)
        .cte("inserted")
    )
    month = func.timezone("UTC", func.date_trunc("month", func.timezone("UTC", inserted.c.time)))
    added = postgresql.insert(_TOTALS).from_select(
        ["tenant_id", "meter", "period_start", "quantity", "event_count"],
        select(
            inserted.c.tenant_id, inserted.c.meter, month, func.sum(inserted.c.quantity), func.count()
        ).group_by(inserted.c.tenant_id, inserted.c.meter, month),
    )
    added = added.on_conflict_do_update(
        index_elements=[_TOTALS.c.tenant_id, _TOTALS.c.meter, _TOTALS.c.period_start],
        set_={
            "quantity": _TOTALS.c.quantity + added.excluded.quantity,
            "event_count": _TOTALS.c.event_count + added.excluded.event_count,
        },
    )
    return select(func.count()).select_from(inserted).add_cte(added.returning(_TOTALS.c.meter).cte("added"))


# Built once: the statements of an ingestion.
_INSERT_EVENTS = _insert_events(sqlite)
_ADD_TOTALS = _add_totals(sqlite)
_MOVE_BATCH = _move_batch()


def _copy_batch(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """Copies rows into the staging table (binary COPY, formatted by psycopg's C code) and moves them."""
    tx.link.statements[CURRENT_RPC.get()] += 1
    with tx.link.cursor.copy(_COPY) as copy:
        copy.set_types(_BATCH_TYPES)
        for row in rows:
            copy.write_row([row[name] for name in _COLUMNS])
    return int(tx.execute(_MOVE_BATCH, {"tenant_id": tx.tenant_id}).scalar_one())


def add_usage_events(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """Inserts usage events of the transaction's tenant, skipping recorded ones, and adds them to the totals.

    Concurrent deliveries of the same event record it once (``ON CONFLICT DO
    NOTHING`` on the event key), and only the events this call inserted are added
    to the totals. On PostgreSQL the batch is copied into the session's staging
    table and moved by one statement (:func:`_move_batch`), for 500 events about a
    tenth of the client CPU of any multi-row ``INSERT``; on SQLite the events go in
    multi-row statements (SQLAlchemy's "insertmanyvalues") and the totals are summed
    here.

    Returns:
        How many events were inserted; the others were duplicates, also within ``rows``.
    """
    if not rows:
        return 0
    if tx.dialect == "postgresql":
        inserted = _copy_batch(tx, rows)
        tx.changed |= inserted > 0
        return inserted
    new = tx.execute(_INSERT_EVENTS, list(rows)).all()
    if not new:
        return 0
    totals: dict[tuple[str, dt.datetime], tuple[float, int]] = {}
    for meter, quantity, time in new:
        key = (meter, period_of(as_utc(time))[0])
        total, count = totals.get(key, (0.0, 0))
        totals[key] = (total + quantity, count + 1)
    tx.execute(
        _ADD_TOTALS,
        [
            {
                "tenant_id": tx.tenant_id,
                "meter": meter,
                "period_start": start,
                "quantity": q,
                "event_count": n,
            }
            for (meter, start), (q, n) in totals.items()
        ],
    )
    tx.changed = True
    return len(new)


def usage_totals(tx: Tx, meters: Collection[str], period_start: dt.datetime) -> dict[str, MeterTotal]:
    """Returns the tenant's usage of ``meters`` in the billing period starting at ``period_start``.

    Returns:
        Meter name to its total; meters without events in the period are absent.
    """
    query = select(_TOTALS.c.meter, _TOTALS.c.quantity, _TOTALS.c.event_count).where(
        _TOTALS.c.tenant_id == tx.tenant_id,
        _TOTALS.c.period_start == period_start,
        _TOTALS.c.meter.in_(list(meters)),
    )
    return {meter: MeterTotal(float(quantity), int(count)) for meter, quantity, count in tx.execute(query)}
