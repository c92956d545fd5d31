"""SQL of plans, subscriptions, plan changes and invoices.

Plans and invoice number counters belong to no tenant (the operator's price list and
numbering); subscriptions, plan changes and invoices are the tenant's (row-level
security on PostgreSQL). A tenant without a subscription row is on the default plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import distinct, select, union, update
from sqlalchemy.dialects import postgresql, sqlite

from services.billing import invoices, store
from services.billing.models import (
    InvoiceNumberCounter,
    InvoiceRow,
    PlanChange,
    PlanChangeRow,
    PlanRow,
    PlanState,
    PricePlan,
    ReservationRecord,
    SubscriptionRow,
    SubscriptionState,
    TenantInvoice,
    TenantSubscription,
    UsageTotal,
)
from services.billing.plans import period_of
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import Order, Repository, table_of
from services.kit.timestamps import as_utc

PLANS = Repository(PricePlan, PlanRow, order=(Order("id"),), tenant_column=None)
SUBSCRIPTIONS = Repository(TenantSubscription, SubscriptionRow)
PLAN_CHANGES = Repository(PlanChange, PlanChangeRow)
INVOICES = Repository(TenantInvoice, InvoiceRow, order=(Order("period_start", descending=True),))
_PLANS = PLANS.table
_CHANGES = PLAN_CHANGES.table
_INVOICES = INVOICES.table
_SUBSCRIPTIONS = SUBSCRIPTIONS.table
_COUNTERS = table_of(InvoiceNumberCounter)
_TOTALS = table_of(UsageTotal)


class NoDefaultPlan(Exception):
    """No plan is the default (the seeded ``free`` plan was changed away by hand)."""


# Plans ----------------------------------------------------------------------------------------------


def get_plan(tx: Tx, plan_id: str, *, lock: bool = False) -> PlanRow | None:
    """Returns the plan of that ID, or None (``lock``: until the transaction ends)."""
    return PLANS.get(tx, plan_id, lock=lock)


def default_plan(tx: Tx) -> PlanRow:
    """Returns the default plan.

    Raises:
        NoDefaultPlan: There is none.
    """
    found = PLANS.find(tx, _PLANS.c.is_default.is_(True))
    if found is None:
        raise NoDefaultPlan()
    return found


def list_plans(tx: Tx, page: Page, show_archived: bool) -> Listing[PlanRow]:
    """Returns a page of the plans by ID; only active ones unless ``show_archived``."""
    where = [] if show_archived else [_PLANS.c.state == PlanState.ACTIVE]
    return PLANS.list_page(tx, page, *where)


def _clear_default(tx: Tx, keep: str) -> None:
    """Makes every plan but ``keep`` not the default (the default plan's row is locked first)."""
    tx.execute(
        update(_PLANS).where(_PLANS.c.is_default.is_(True), _PLANS.c.id != keep).values(is_default=False)
    )


def add_plan(tx: Tx, row: PlanRow) -> PlanRow | None:
    """Inserts a plan, or returns the one an earlier request with its ``request_id`` made.

    A plan made ``is_default`` becomes the only default, in the same transaction.

    Returns:
        ``row``, or the earlier request's plan; None when a plan of that ID exists.
    """
    made = PLANS.create(tx, row)
    if made is row and row.is_default:
        _clear_default(tx, row.id)
    return made


def update_plan(tx: Tx, plan_id: str, values: Mapping[str, Any]) -> PlanRow | None:
    """Sets ``values`` on a plan (making it the default clears the others); None when there is none."""
    row = PLANS.update(tx, (plan_id,), values)
    if row is not None and values.get("is_default"):
        _clear_default(tx, plan_id)
    return row


# Subscriptions ---------------------------------------------------------------------------------------


def subscription_of(tx: Tx) -> SubscriptionRow:
    """Returns the tenant's subscription: its row, or the default plan's (``create_time`` None)."""
    row = SUBSCRIPTIONS.get(tx)
    if row is not None:
        return row
    return SubscriptionRow(
        tenant_id=tx.tenant_id,
        plan_id=default_plan(tx).id,
        state=SubscriptionState.ACTIVE,
        trial_end_time=None,
        cancel_at_period_end=False,
        cancel_time=None,
        create_time=None,
        update_time=None,
    )


def plan_in_effect(tx: Tx, subscription: SubscriptionRow) -> PlanRow:
    """Returns the plan that bills and limits the tenant: its subscription's, or the default once canceled."""
    if subscription.state == SubscriptionState.CANCELED:
        return default_plan(tx)
    found = get_plan(tx, subscription.plan_id)
    return found if found is not None else default_plan(tx)


def hard_limits(plan: PlanRow) -> dict[str, float]:
    """Returns meter to hard limit of each charge of the plan with one (0: unlimited, left out)."""
    return {c["meter"]: float(c["hard_limit"]) for c in plan.charges if c["hard_limit"] > 0}


def soft_limits(plan: PlanRow) -> dict[str, float]:
    """Returns meter to soft limit of each charge of the plan with one (0: none, left out)."""
    return {c["meter"]: float(c["soft_limit"]) for c in plan.charges if c["soft_limit"] > 0}


def tenant_plan(tx: Tx) -> PlanRow:
    """Returns the plan in effect for the tenant now."""
    return plan_in_effect(tx, subscription_of(tx))


def plan_of_tenant(tx: Tx, tenant_id: str) -> PlanRow:
    """Returns the plan in effect for ``tenant_id`` now, in a system transaction (every tenant's rows)."""
    row = tx.execute(select(_SUBSCRIPTIONS).where(_SUBSCRIPTIONS.c.tenant_id == tenant_id)).mappings().first()
    if row is None or row["state"] == SubscriptionState.CANCELED:
        return default_plan(tx)
    found = get_plan(tx, row["plan_id"])
    return found if found is not None else default_plan(tx)


def save_subscription(tx: Tx, row: SubscriptionRow, change: PlanChangeRow | None) -> SubscriptionRow:
    """Writes the tenant's subscription (inserted the first time) and records a plan change with it."""
    values = SUBSCRIPTIONS.values(row)
    statement = (postgresql if tx.dialect == "postgresql" else sqlite).insert(_SUBSCRIPTIONS)
    tx.execute(
        statement.values(values).on_conflict_do_update(
            index_elements=[_SUBSCRIPTIONS.c.tenant_id],
            set_={k: v for k, v in values.items() if k not in ("tenant_id", "create_time")},
        )
    )
    if change is not None:
        PLAN_CHANGES.insert(tx, change)
    tx.changed = True
    found = SUBSCRIPTIONS.get(tx)
    assert found is not None, "written in this transaction"
    return found


def lock_subscription(tx: Tx) -> SubscriptionRow:
    """Returns the tenant's subscription under the tenant's subscription lock (one change at a time)."""
    tx.lock_tenant("billing.subscription")
    return subscription_of(tx)


# Reservations with the subscribed plan's limits --------------------------------------------------------


def reserve_on_plan(
    tx: Tx, record: ReservationRecord, period_start: dt.datetime
) -> tuple[PlanRow, ReservationRecord]:
    """Makes a reservation against the hard limits of the tenant's plan (:func:`store.reserve`).

    Returns:
        The plan and the reservation (or the earlier one of its ID).

    Raises:
        PlanShortfall: A meter would exceed its hard limit.
    """
    plan = tenant_plan(tx)
    try:
        return plan, store.reserve(tx, record, hard_limits(plan), period_start)
    except store.QuotaShortfall as short:
        raise PlanShortfall(plan.id, short.shortfalls) from None


class PlanShortfall(store.QuotaShortfall):
    """A reservation does not fit in the hard limits of the tenant's plan (nothing was written).

    Attributes:
        plan_id: The plan.
    """

    def __init__(self, plan_id: str, shortfalls: list[store.Shortfall]) -> None:
        super().__init__(shortfalls)
        self.plan_id = plan_id


def entitlement_inputs(
    tx: Tx, meters: list[str], period_start: dt.datetime, now: dt.datetime
) -> tuple[PlanRow, dict[str, float], dict[str, float]]:
    """Returns the tenant's plan, and the period's usage and held quantities of ``meters``."""
    used, held = store.used_and_held(tx, meters, period_start, now)
    return tenant_plan(tx), used, held


# Invoices ---------------------------------------------------------------------------------------------


def invoice_inputs(tx: Tx, start: dt.datetime, end: dt.datetime) -> invoices.InvoiceInputs:
    """Returns what the tenant's invoice of ``[start, end)`` is made of, read in this transaction."""
    subscription = subscription_of(tx)
    plan_at_end = plan_in_effect(tx, subscription)
    changes = PLAN_CHANGES.find_all(tx, _CHANGES.c.change_time >= start, _CHANGES.c.change_time < end)
    changes.sort(key=lambda c: (c.change_time, c.id))
    plans = {plan_at_end.id: plan_at_end}
    for change in changes:
        for plan_id in (change.from_plan_id, change.to_plan_id):
            if plan_id not in plans:
                found = get_plan(tx, plan_id)
                assert found is not None, "plans are archived, never deleted"
                plans[plan_id] = found
    meters = [c["meter"] for c in plan_at_end.charges]
    usage = {m: t.quantity for m, t in store.usage_totals(tx, meters, start).items()}
    return invoices.InvoiceInputs(subscription, plan_at_end, plans, changes, usage)


def get_invoice(tx: Tx, invoice_id: str, *, lock: bool = False) -> InvoiceRow | None:
    """Returns the tenant's invoice, or None (``lock``: until the transaction ends)."""
    return INVOICES.get(tx, invoice_id, lock=lock)


def list_invoices(tx: Tx, page: Page) -> Listing[InvoiceRow]:
    """Returns a page of the tenant's invoices, the latest period first."""
    return INVOICES.list_page(tx, page)


def all_invoices(tx: Tx, limit: int) -> list[InvoiceRow]:
    """Returns up to ``limit`` of the tenant's invoices, the latest period first."""
    query = (
        select(*_INVOICES.c)
        .where(_INVOICES.c.tenant_id == tx.tenant_id)
        .order_by(_INVOICES.c.period_start.desc())
        .limit(limit)
    )
    return INVOICES.records(tx.execute(query).all())


def draft_invoice(tx: Tx, start: dt.datetime, now: dt.datetime) -> InvoiceRow:
    """Makes the tenant's draft invoice of the period from ``start``, once; applies a cancel at its end.

    Idempotent: the invoice's ID is its period's, so a second sweep (or replica) finds
    it and changes nothing. A subscription with ``cancel_at_period_end`` becomes
    ``CANCELED`` in the same transaction, at the period's end.

    Returns:
        The period's invoice (the one made before, if any).
    """
    tx.lock_tenant("billing.subscription")
    invoice_id = invoices.invoice_id(start)
    found = get_invoice(tx, invoice_id)
    if found is not None:
        return found
    _, end = period_of(start)
    draft = invoices.build(invoice_inputs(tx, start, end), start, end)
    row = InvoiceRow(
        tenant_id=tx.tenant_id,
        id=invoice_id,
        number=None,
        state="DRAFT",
        currency_code=draft.currency_code,
        period_start=start,
        period_end=end,
        plan_id=draft.plan_id,
        lines=draft.lines,
        subtotal=draft.subtotal,
        total=draft.total,
        create_time=now,
        finalize_time=None,
        paid_time=None,
        void_time=None,
    )
    INVOICES.insert(tx, row)
    subscription = SUBSCRIPTIONS.get(tx)
    if subscription is not None and subscription.cancel_at_period_end and subscription.cancel_time is None:
        SUBSCRIPTIONS.update(
            tx,
            (),
            {
                "state": SubscriptionState.CANCELED,
                "cancel_time": end,
                "cancel_at_period_end": False,
                "update_time": now,
            },
        )
    return row


def tenants_to_invoice(tx: Tx, start: dt.datetime) -> list[str]:
    """Returns the tenants with usage in the period or a subscription, not invoiced yet (system work)."""
    invoiced = select(_INVOICES.c.tenant_id).where(_INVOICES.c.id == invoices.invoice_id(start))
    candidates = union(
        select(distinct(_TOTALS.c.tenant_id).label("tenant_id")).where(_TOTALS.c.period_start == start),
        select(_SUBSCRIPTIONS.c.tenant_id),
    ).subquery()
    query = select(candidates.c.tenant_id).where(candidates.c.tenant_id.not_in(invoiced))
    return sorted(t for (t,) in tx.execute(query))


def next_number(tx: Tx, issuer: str, year: int) -> int:
    """Returns the issuer's next invoice number of ``year``, allocated in this transaction.

    ``INSERT ... ON CONFLICT DO UPDATE SET last_number = last_number + 1 RETURNING``:
    the counter row is created at 1 or incremented, and its row lock (the one
    ``SELECT ... FOR UPDATE`` would take) is held until the transaction ends, so
    concurrent finalizations take numbers one after another, and a transaction that
    rolls back gives its number back: no gaps, no duplicates (PostgreSQL docs,
    "INSERT ... ON CONFLICT DO UPDATE"; on SQLite the write lock of ``BEGIN IMMEDIATE``).
    """
    dialect = postgresql if tx.dialect == "postgresql" else sqlite
    statement = dialect.insert(_COUNTERS).values(issuer=issuer, year=year, last_number=1)
    statement = statement.on_conflict_do_update(
        index_elements=[_COUNTERS.c.issuer, _COUNTERS.c.year],
        set_={"last_number": _COUNTERS.c.last_number + 1},
    ).returning(_COUNTERS.c.last_number)
    tx.changed = True
    return int(tx.execute(statement).scalar_one())


def finalize_invoice(tx: Tx, invoice_id: str, issuer: str, now: dt.datetime) -> InvoiceRow | None:
    """Finalizes the tenant's draft invoice: rated again, numbered, ``OPEN``; one transaction.

    Idempotent: an invoice that is not a draft is returned as it is. The invoice row is
    locked first, so two finalizations of one invoice take one number.

    Returns:
        The invoice, or None when the tenant has no such invoice.
    """
    found = get_invoice(tx, invoice_id, lock=True)
    if found is None or found.state != "DRAFT":
        return found
    start, end = as_utc(found.period_start), as_utc(found.period_end)
    draft = invoices.build(invoice_inputs(tx, start, end), start, end)
    number = invoices.invoice_number(issuer, now.year, next_number(tx, issuer, now.year))
    return INVOICES.update(
        tx,
        (invoice_id,),
        {
            "state": "OPEN",
            "number": number,
            "plan_id": draft.plan_id,
            "currency_code": draft.currency_code,
            "lines": draft.lines,
            "subtotal": draft.subtotal,
            "total": draft.total,
            "finalize_time": now,
        },
    )


class InvoiceNotOpen(Exception):
    """The invoice is not finalized and unpaid (a draft, or paid or void), so it cannot be paid or voided.

    Attributes:
        state: Its state.
    """

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


def close_invoice(tx: Tx, invoice_id: str, state: str, now: dt.datetime) -> InvoiceRow | None:
    """Marks an open invoice ``PAID`` or ``VOID``; one already in that state is returned as it is.

    Returns:
        The invoice, or None when the tenant has no such invoice.

    Raises:
        InvoiceNotOpen: It is a draft, or in the other closed state.
    """
    found = get_invoice(tx, invoice_id, lock=True)
    if found is None or found.state == state:
        return found
    if found.state != "OPEN":
        raise InvoiceNotOpen(found.state)
    column = "paid_time" if state == "PAID" else "void_time"
    return INVOICES.update(tx, (invoice_id,), {"state": state, column: now})
