"""Tables of the billing service and the records its store reads and writes.

Each ORM model is the schema of its table (Alembic compares migrations with it);
the frozen dataclass after it is the row as the service handles it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import DateTime, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.audit import outbox_table
from services.kit.db import new_metadata


class Base(DeclarativeBase):
    """Declarative base of the billing service's tables."""

    metadata = new_metadata()


# Audit events of this service's calls, committed with their changes and relayed to auth.
AUDIT_OUTBOX = outbox_table(Base.metadata)


class UsageEvent(Base):
    """One metered usage event, identified by ``(tenant_id, source, event_id)`` (CloudEvents ids).

    ``quantity`` is in the meter's unit (see :mod:`services.billing.plans`); ``time`` is when
    the usage happened, ``ingest_time`` when it was recorded.
    """

    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_tenant_id_meter_time", "tenant_id", "meter", "time"),)

    # The tenant is part of the key: one tenant's event IDs never hide another's.
    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    source: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    meter: Mapped[str] = mapped_column(String(63))
    quantity: Mapped[float] = mapped_column(Float)
    subject: Mapped[str] = mapped_column(String(1024), default="")
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ingest_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class UsageTotal(Base):
    """The running total of one meter of one tenant in one billing period.

    Kept in the same transaction as the events it counts (only events newly
    inserted are added), so it always equals the sum over ``usage_events`` of
    the period, and an entitlement check reads one row instead of summing a
    month of events.
    """

    __tablename__ = "usage_totals"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    meter: Mapped[str] = mapped_column(String(63), primary_key=True)
    period_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float)
    event_count: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True, slots=True)
class MeterTotal:
    """A meter's usage in a period: the sum of its events' quantities and how many there were."""

    quantity: float
    event_count: int
