"""Tables of the billing service and the records its store reads and writes.

Each ORM model is the schema of its table (Alembic compares migrations with it);
the frozen dataclass after it is the row as the service handles it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.audit import outbox_table
from services.kit.db import new_metadata
from services.kit.outbox import cloudevents_table
from services.kit.timestamps import as_utc


class Base(DeclarativeBase):
    """Declarative base of the billing service's tables."""

    metadata = new_metadata()


# Audit events of this service's calls, committed with their changes and relayed to auth.
AUDIT_OUTBOX = outbox_table(Base.metadata)


#: ``usage_events.data``: JSON, stored as ``jsonb`` on PostgreSQL (meters read paths into it).
EVENT_DATA = JSON().with_variant(JSONB(), "postgresql")


class UsageEvent(Base):
    """One recorded usage event, a CloudEvent 1.0 of a tenant.

    ``type``, ``subject``, ``time`` and ``data`` are its CloudEvents attributes (``time``:
    when the usage happened; ``ingest_time``: when it was recorded). ``meter`` and
    ``quantity`` are what it counts towards a built-in meter (:mod:`services.billing.plans`):
    the meter of its ``type`` and its ``data.quantity``, or ``""`` and 0 for other types.
    ``(tenant_id, source, event_id)`` is its key (CloudEvents 1.0 section 3.1.1: ``source``
    and ``id`` identify an event), so an event sent again is a duplicate for as long as
    it is kept; one tenant's event IDs never hide another's.
    """

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_tenant_id_meter_time", "tenant_id", "meter", "time"),
        Index("ix_usage_events_tenant_id_type_time", "tenant_id", "type", "time"),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    source: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    ingest_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    type: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(1024), default="")
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(EVENT_DATA)
    meter: Mapped[str] = mapped_column(String(63))
    quantity: Mapped[float] = mapped_column(Float)


class EventRow(TypedDict):
    """A usage event as the store records it (``usage_events``' columns).

    ``time`` and ``ingest_time`` are aware UTC datetimes; ``meter`` and ``quantity`` are
    the built-in meter of ``type`` and the event's ``data.quantity``, or ``""`` and 0.
    """

    tenant_id: str
    source: str
    event_id: str
    ingest_time: dt.datetime
    type: str
    subject: str
    time: dt.datetime
    data: dict[str, Any]
    meter: str
    quantity: float


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


class UsageRollup(Base):
    """The built-in meters' usage per 15-minute bucket and group, kept with the events it adds up.

    A pre-aggregation (what OpenMeter keeps in ClickHouse materialized views, here a table
    updated in the same transaction as the events, :mod:`services.billing.rollups`):
    ``QueryUsage`` of a built-in meter reads these rows instead of the events when its
    windows start on quarter hours (every hour, day and month of every time zone does)
    and it groups and filters by the built-in keys only. A group-by value the events
    lack is ``""``.
    """

    __tablename__ = "usage_rollups"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    meter: Mapped[str] = mapped_column(String(63), primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    agent: Mapped[str] = mapped_column(String(200), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    principal: Mapped[str] = mapped_column(String(200), primary_key=True)
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


class Aggregation(StrEnum):
    """How a meter adds up the events of a window; ``Meter.Aggregation.AGGREGATION_<value>`` on the wire."""

    SUM = "SUM"
    COUNT = "COUNT"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    MAX = "MAX"
    LATEST = "LATEST"


class TenantMeter(Base):
    """A meter a tenant defined over its usage events (the built-in meters are not rows).

    ``value_property`` and the values of ``group_by`` (key to path) are JSONPath in dot
    notation into the events' ``data`` (:mod:`services.billing.meters`);
    ``late_event_grace_seconds`` is how long after a window ends its events still count.
    """

    __tablename__ = "meters"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(String(1000), default="")
    event_type: Mapped[str] = mapped_column(String(255))
    aggregation: Mapped[str] = mapped_column(String(20))
    value_property: Mapped[str] = mapped_column(String(200), default="")
    group_by: Mapped[dict[str, str]] = mapped_column(JSON)
    late_event_grace_seconds: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(63), default="")
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class MeterRow:
    """A meter, as stored, or a built-in one (``create_time`` and ``update_time`` None, never stored).

    ``aggregation`` is an :class:`Aggregation` value.
    """

    tenant_id: str
    id: str
    display_name: str
    description: str
    event_type: str
    aggregation: str
    value_property: str
    group_by: dict[str, str]
    late_event_grace_seconds: int
    unit: str
    request_id: str | None
    create_time: dt.datetime | None
    update_time: dt.datetime | None

    @property
    def built_in(self) -> bool:
        """Whether it is a built-in meter (one no tenant defined)."""
        return self.create_time is None


@dataclass(frozen=True, slots=True)
class UsageValue:
    """A meter's value in one window for one group of events.

    Attributes:
        window: The window's index in the query's windows.
        value: The aggregation of the group's events in the window.
        subject: The events' subject when grouped by it, else ``""``.
        groups: Group-by key to the events' value at its path, as text; keys without one absent.
    """

    window: int
    value: float
    subject: str
    groups: dict[str, str]


class ThresholdType(StrEnum):
    """What a usage alert threshold's value is; ``UsageAlert.Threshold.Type.TYPE_<value>`` on the wire."""

    PERCENT = "PERCENT"
    QUANTITY = "QUANTITY"
    SOFT_LIMIT_PERCENT = "SOFT_LIMIT_PERCENT"


class Threshold(TypedDict):
    """One threshold of a usage alert: its :class:`ThresholdType` value and its value."""

    type: str
    value: float


class UsageAlert(Base):
    """A tenant's usage alert: thresholds of a built-in meter's usage in each billing period."""

    __tablename__ = "usage_alerts"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    meter: Mapped[str] = mapped_column(String(63))
    thresholds: Mapped[list[Threshold]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    notification_channels: Mapped[list[str]] = mapped_column(JSON, default=list)


@dataclass(frozen=True, slots=True)
class UsageAlertRow:
    """A usage alert, as stored; ``notification_channels`` are channel resource names."""

    tenant_id: str
    id: str
    display_name: str
    meter: str
    thresholds: list[Threshold]
    request_id: str | None
    create_time: dt.datetime
    notification_channels: list[str]


class UsageAlertEvent(Base):
    """One firing of a usage alert: a threshold a billing period's usage reached, once per both.

    The unique key ``(tenant, alert, period, threshold)`` makes a firing happen once
    whichever replica's sweep finds it first; its audit event and its notification are
    written in the same transaction.
    """

    __tablename__ = "usage_alert_events"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id",
            "alert_id",
            "period_start",
            "threshold_type",
            "threshold_value",
            name="uq_usage_alert_events_firing",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "alert_id"], ["usage_alerts.tenant_id", "usage_alerts.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    meter: Mapped[str] = mapped_column(String(63))
    threshold_type: Mapped[str] = mapped_column(String(20))
    threshold_value: Mapped[float] = mapped_column(Float)
    period_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    quantity: Mapped[float] = mapped_column(Float)
    threshold_quantity: Mapped[float] = mapped_column(Float)
    limit: Mapped[float] = mapped_column(Float)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class UsageAlertEventRow:
    """A firing of a usage alert, as stored."""

    tenant_id: str
    alert_id: str
    id: str
    meter: str
    threshold_type: str
    threshold_value: float
    period_start: dt.datetime
    period_end: dt.datetime
    quantity: float
    threshold_quantity: float
    limit: float
    create_time: dt.datetime


# Usage alerts' notifications (CloudEvents), committed with their firing and relayed to the
# tenant's notification channel (services.billing.alerts.deliver).
NOTIFICATION_OUTBOX = cloudevents_table(Base.metadata, "notification_outbox")


# Plans, subscriptions and invoices ------------------------------------------------------------------


class PlanState(StrEnum):
    """Whether a plan is offered; ``Plan.State.STATE_<value>`` on the wire."""

    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"


class TierJson(TypedDict):
    """A tier of a charge as stored: decimals as text (minor units), ``up_to`` None when open."""

    up_to: str | None
    unit_amount: str
    flat_amount: str


class ChargeJson(TypedDict):
    """A charge of a plan as stored (``plans.charges``); decimals as text, quantities as numbers.

    ``model`` is a :class:`services.billing.pricing.ChargeModel` value.
    """

    meter: str
    model: str
    unit_amount: str
    package_size: int
    tiers: list[TierJson]
    included_quantity: float
    hard_limit: float
    soft_limit: float


class PricePlan(Base):
    """A plan of the price list; global (operator-managed), so no tenant and no row-level security.

    ``charges`` is a list of :class:`ChargeJson`; money is integer minor units of
    ``currency_code`` or decimal text of them. At most one row has ``is_default``.
    """

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("request_id"),)

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(String(1000), default="")
    currency_code: Mapped[str] = mapped_column(String(3))
    fixed_fee: Mapped[int] = mapped_column(BigInteger)
    charges: Mapped[list[ChargeJson]] = mapped_column(JSON)
    request_rate: Mapped[float] = mapped_column(Float)
    is_default: Mapped[bool] = mapped_column(Boolean)
    trial_days: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class PlanRow:
    """A plan, as stored."""

    id: str
    display_name: str
    description: str
    currency_code: str
    fixed_fee: int
    charges: list[ChargeJson]
    request_rate: float
    is_default: bool
    trial_days: int
    state: str  # a PlanState value
    request_id: str | None
    create_time: dt.datetime
    update_time: dt.datetime


class SubscriptionState(StrEnum):
    """Where a subscription is; ``Subscription.State.STATE_<value>`` on the wire."""

    TRIALING = "TRIALING"
    ACTIVE = "ACTIVE"
    CANCELED = "CANCELED"


class TenantSubscription(Base):
    """A tenant's subscription, once it was changed; a tenant without a row is on the default plan."""

    __tablename__ = "subscriptions"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(20))
    trial_end_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean)
    cancel_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """A subscription, as stored (or the default one of a tenant without a row: ``create_time`` None)."""

    tenant_id: str
    plan_id: str
    state: str  # a SubscriptionState value
    trial_end_time: dt.datetime | None
    cancel_at_period_end: bool
    cancel_time: dt.datetime | None
    create_time: dt.datetime | None
    update_time: dt.datetime | None


class PlanChange(Base):
    """A change of a tenant's plan: the period's invoice prorates the fixed fees by it."""

    __tablename__ = "plan_changes"
    __table_args__ = (Index("ix_plan_changes_tenant_id_change_time", "tenant_id", "change_time"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    change_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    from_plan_id: Mapped[str] = mapped_column(String(63))
    to_plan_id: Mapped[str] = mapped_column(String(63))


@dataclass(frozen=True, slots=True)
class PlanChangeRow:
    """A plan change, as stored."""

    tenant_id: str
    id: str
    change_time: dt.datetime
    from_plan_id: str
    to_plan_id: str


class InvoiceState(StrEnum):
    """Where an invoice is; ``Invoice.State.STATE_<value>`` on the wire (``OPEN``: finalized)."""

    DRAFT = "DRAFT"
    OPEN = "OPEN"
    PAID = "PAID"
    VOID = "VOID"


class LineTierJson(TypedDict):
    """The part of a usage line one tier priced (``amount``: decimal text of minor units, unrounded)."""

    tier: int
    quantity: float
    amount: str


class LineJson(TypedDict):
    """A line item as stored (``invoices.lines``); ``kind`` is an ``InvoiceLine.Kind`` suffix."""

    kind: str
    description: str
    plan_id: str
    meter: str
    quantity: float
    included_quantity: float
    tiers: list[LineTierJson]
    amount: int


class TenantInvoice(Base):
    """A tenant's invoice for one billing period (one per period: the ID is ``period-{yyyy}-{mm}``).

    ``number`` is unique across tenants (gapless per issuer and year, allocated from
    :class:`InvoiceNumberCounter` in the finalizing transaction); None for a draft.
    """

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("number"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    number: Mapped[str | None] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(20))
    currency_code: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    plan_id: Mapped[str] = mapped_column(String(63))
    lines: Mapped[list[LineJson]] = mapped_column(JSON)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finalize_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    paid_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    void_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """An invoice, as stored (a preview has ``create_time`` of its making and is never stored)."""

    tenant_id: str
    id: str
    number: str | None
    state: str  # an InvoiceState value
    currency_code: str
    period_start: dt.datetime
    period_end: dt.datetime
    plan_id: str
    lines: list[LineJson]
    subtotal: int
    total: int
    create_time: dt.datetime
    finalize_time: dt.datetime | None
    paid_time: dt.datetime | None
    void_time: dt.datetime | None


class InvoiceNumberCounter(Base):
    """The last invoice number an issuer gave in a year; global, locked by each finalization."""

    __tablename__ = "invoice_number_counters"

    issuer: Mapped[str] = mapped_column(String(20), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)
