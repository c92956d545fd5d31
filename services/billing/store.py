"""SQL of the billing service. Every usage query filters by the transaction's tenant.

Usage events and the running totals they add to are written in one transaction,
so a total always equals the sum of its period's events, and duplicates (an
event whose ``(tenant, source, id)`` is recorded already) add nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from services.billing.models import MeterTotal, UsageEvent, UsageTotal
from services.billing.plans import period_of
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


# Built once: per dialect, an INSERT ... ON CONFLICT DO NOTHING RETURNING of events and
# an upsert that adds to totals.
_INSERT_EVENTS = {"postgresql": _insert_events(postgresql), "sqlite": _insert_events(sqlite)}
_ADD_TOTALS = {"postgresql": _add_totals(postgresql), "sqlite": _add_totals(sqlite)}


def add_usage_events(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
    """Inserts usage events of the transaction's tenant, skipping recorded ones, and adds them to the totals.

    The events go in batched multi-row statements (SQLAlchemy's "insertmanyvalues");
    concurrent deliveries of the same event record it once (``ON CONFLICT DO
    NOTHING`` on the event key), and only the events this call inserted are added.

    Returns:
        How many events were inserted; the others were duplicates, also within ``rows``.
    """
    inserted = tx.execute(_INSERT_EVENTS[tx.dialect], list(rows)).all()
    if not inserted:
        return 0
    totals: dict[tuple[str, dt.datetime], tuple[float, int]] = {}
    for meter, quantity, time in inserted:
        key = (meter, period_of(as_utc(time))[0])
        total, count = totals.get(key, (0.0, 0))
        totals[key] = (total + quantity, count + 1)
    tx.execute(
        _ADD_TOTALS[tx.dialect],
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
    return len(inserted)


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
