"""Tables of the billing service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Float, Index, String
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
