"""SQL of the billing service. Every usage query filters by ``tenant_id``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.billing.models import UsageEvent

_COLUMNS = tuple(column.key for column in UsageEvent.__table__.columns)


async def add_usage_events(session: AsyncSession, events: Sequence[UsageEvent]) -> int:
    """Insert usage events, skipping those whose ``(source, event_id)`` is recorded already.

    One ``INSERT ... ON CONFLICT DO NOTHING`` statement (PostgreSQL or SQLite), so
    concurrent deliveries of the same event record it once. On PostgreSQL every event
    must belong to the tenant the transaction acts for (row-level security).

    Returns:
        How many events were inserted; the others were duplicates, also within ``events``.
    """
    rows = [{key: getattr(event, key) for key in _COLUMNS} for event in events]
    keys = ["source", "event_id"]
    statement: postgresql.Insert | sqlite.Insert
    if session.get_bind().dialect.name == "postgresql":
        statement = postgresql.insert(UsageEvent).values(rows).on_conflict_do_nothing(index_elements=keys)
    else:
        statement = sqlite.insert(UsageEvent).values(rows).on_conflict_do_nothing(index_elements=keys)
    inserted = await session.execute(statement.returning(UsageEvent.event_id))
    return len(inserted.all())


async def usage_by_meter(
    session: AsyncSession, tenant_id: str, meters: Collection[str], start: dt.datetime, end: dt.datetime
) -> dict[str, tuple[float, int]]:
    """Return the tenant's usage of ``meters`` in ``[start, end)``.

    Returns:
        Meter name to ``(sum of quantities, number of events)``; meters without events are absent.
    """
    query = (
        select(UsageEvent.meter, func.sum(UsageEvent.quantity), func.count())
        .where(
            UsageEvent.tenant_id == tenant_id,
            UsageEvent.meter.in_(meters),
            UsageEvent.time >= start,
            UsageEvent.time < end,
        )
        .group_by(UsageEvent.meter)
    )
    return {meter: (float(total), int(count)) for meter, total, count in await session.execute(query)}
