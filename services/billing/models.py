"""Tables of the billing service and the records its store reads and writes.

Each ORM model is the schema of its table (Alembic compares migrations with it);
the frozen dataclass after it is the row as the service handles it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import JSON, DateTime, Float, ForeignKeyConstraint, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.audit import outbox_table
from services.kit.db import new_metadata
from services.kit.timestamps import as_utc


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


class ReservationState(StrEnum):
    """Where a reservation is; stored as the member's value, ``Reservation.State.STATE_<value>`` on the wire.

    ``EXPIRED`` is never stored: an ``ACTIVE`` row whose ``expire_time`` has passed is
    reported so (:meth:`ReservationRow.state_at`), and stops counting at that instant.
    """

    ACTIVE = "ACTIVE"
    SETTLED = "SETTLED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class Reservation(Base):
    """Quantities of a tenant's meters held for a unit of work until it settles, is released or expires."""

    __tablename__ = "reservations"
    # The reserve path sums what the tenant's active, unexpired reservations hold.
    __table_args__ = (
        Index("ix_reservations_tenant_id_state_expire_time", "tenant_id", "state", "expire_time"),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(1024), default="")
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expire_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    settled_quantities: Mapped[dict[str, float] | None] = mapped_column(JSON)


@dataclass(frozen=True, slots=True)
class ReservationRow:
    """A reservation, as stored; the quantities it holds are rows of ``reservation_meters``.

    ``settled_quantities`` (meter to usage recorded) is None until it is settled.
    """

    tenant_id: str
    id: str
    state: str  # a ReservationState value other than EXPIRED
    subject: str
    create_time: dt.datetime
    expire_time: dt.datetime
    end_time: dt.datetime | None
    settled_quantities: dict[str, float] | None

    def state_at(self, now: dt.datetime) -> ReservationState:
        """Returns the state at ``now``: ``EXPIRED`` for an active one whose ``expire_time`` has come."""
        if self.state == ReservationState.ACTIVE and as_utc(self.expire_time) <= now:
            return ReservationState.EXPIRED
        return ReservationState(self.state)


class ReservationMeter(Base):
    """One meter of a reservation and the quantity it holds, in the meter's unit."""

    __tablename__ = "reservation_meters"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "reservation_id"],
            ["reservations.tenant_id", "reservations.id"],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    reservation_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    meter: Mapped[str] = mapped_column(String(63), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True, slots=True)
class ReservationMeterRow:
    """One meter of a reservation, as stored."""

    tenant_id: str
    reservation_id: str
    meter: str
    quantity: float


@dataclass(frozen=True, slots=True)
class ReservationRecord:
    """A reservation with the quantities it holds, as the service handles it.

    Attributes:
        row: The reservation.
        quantities: Meter to the quantity held, in the meter's unit.
    """

    row: ReservationRow
    quantities: dict[str, float]
