"""SQL of the billing service. Every usage query filters by ``tenant_id``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.billing.models import UsageEvent
from services.kit.sql import insert_ignoring_duplicates

_COLUMNS = tuple(column.key for column in UsageEvent.__table__.columns)


async def add_usage_events(session: AsyncSession, events: Sequence[UsageEvent]) -> int:
    """Inserts usage events, skipping those whose ``(tenant, source, id)`` is recorded already.

    One ``INSERT ... ON CONFLICT DO NOTHING``, so concurrent deliveries of the same
    event record it once. On PostgreSQL every event must belong to the tenant the
    transaction acts for (row-level security).

    Returns:
        How many events were inserted; the others were duplicates, also within ``events``.
    """
    rows = [{key: getattr(event, key) for key in _COLUMNS} for event in events]
    return await insert_ignoring_duplicates(session, UsageEvent, rows, ["tenant_id", "source", "event_id"])


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
