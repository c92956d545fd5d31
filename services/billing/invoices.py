"""An invoice's line items from a tenant's plan, subscription, plan changes and usage of a period.

Pure: the store gathers the inputs (:class:`InvoiceInputs`), this module prices them.
Rules, stated once:

* A billing period is a calendar month in UTC (:func:`services.billing.plans.period_of`).
* Fixed fee: the plan in effect at the period's start charges its ``fixed_fee`` for the
  period's days, less the days of a trial (a trial frees whole UTC days, the day it
  ends included when it ends after midnight).
* A plan change is prorated by the day, as Stripe prorates (a credit for unused time on
  the old price, a charge for the remaining time on the new one): for the days from the
  change's UTC day (counted as the new plan's) to the period's end, less trial days, a
  credit of ``-old.fixed_fee * days / period_days`` and a charge of
  ``new.fixed_fee * days / period_days``.
* Usage of the whole period is rated by the plan in effect at the period's end, one line
  per charge of that plan, by meter (Stripe bills metered usage on the price at the end
  of the period, too).
* Each line's amount is computed exactly and rounded once, half up
  (:func:`services.billing.pricing.round_minor`); the subtotal and total are sums of the
  rounded lines (no taxes or discounts: total equals subtotal).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.billing import pricing
from services.billing.models import ChargeJson, LineJson, PlanChangeRow, PlanRow, SubscriptionRow
from services.kit.timestamps import as_utc

DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class InvoiceInputs:
    """What a period's invoice is made of, read in one transaction.

    Attributes:
        subscription: The tenant's subscription (its plan is the one in effect now).
        plan_at_end: The plan in effect at the period's end (the default one after a cancel).
        plans: Every plan the period's changes name, and ``plan_at_end``, by ID.
        changes: The period's plan changes, in time order.
        usage: Meter to the period's usage, in the meter's unit.
    """

    subscription: SubscriptionRow
    plan_at_end: PlanRow
    plans: Mapping[str, PlanRow]
    changes: Sequence[PlanChangeRow]
    usage: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Draft:
    """A priced invoice, not yet stored.

    Attributes:
        plan_id: The plan in effect at the period's end.
        currency_code: Its currency.
        lines: Fixed fee, prorations, then usage by meter.
        subtotal: Sum of the lines' amounts, minor units.
        total: What is owed, minor units (the subtotal).
    """

    plan_id: str
    currency_code: str
    lines: list[LineJson]
    subtotal: int
    total: int


def charge_of(stored: ChargeJson) -> pricing.Charge:
    """Returns the charge of its stored form (decimal text back to :class:`~decimal.Decimal`)."""
    return pricing.Charge(
        meter=stored["meter"],
        model=pricing.ChargeModel(stored["model"]),
        unit_amount=Decimal(stored["unit_amount"] or "0"),
        package_size=int(stored["package_size"]),
        tiers=tuple(
            pricing.Tier(
                up_to=None if t["up_to"] is None else Decimal(t["up_to"]),
                unit_amount=Decimal(t["unit_amount"] or "0"),
                flat_amount=Decimal(t["flat_amount"] or "0"),
            )
            for t in stored["tiers"]
        ),
        included_quantity=_decimal(stored["included_quantity"]),
        hard_limit=float(stored["hard_limit"]),
        soft_limit=float(stored["soft_limit"]),
    )


def _decimal(quantity: float) -> Decimal:
    """Returns a quantity as a decimal, by its shortest text (``0.1`` is ``Decimal("0.1")``)."""
    return Decimal(repr(float(quantity)))


def trial_days(start: dt.datetime, end: dt.datetime, trial_end: dt.datetime | None) -> int:
    """Returns the whole UTC days of ``[start, end)`` a trial ending at ``trial_end`` frees."""
    if trial_end is None or trial_end <= start:
        return 0
    return min(math.ceil((trial_end - start) / DAY), (end - start) // DAY)


def _fee(plan: PlanRow, days: int, period_days: int) -> Decimal:
    return Decimal(plan.fixed_fee) * days / period_days


def build(inputs: InvoiceInputs, start: dt.datetime, end: dt.datetime) -> Draft:
    """Returns the invoice of the period ``[start, end)`` (the module's rules).

    Args:
        inputs: The tenant's plans, subscription, changes and usage of the period.
        start: The period's start, midnight UTC.
        end: The period's end, midnight UTC.
    """
    start, end = as_utc(start), as_utc(end)
    period_days = (end - start) // DAY
    trial_end = inputs.subscription.trial_end_time
    trial_end = None if trial_end is None else as_utc(trial_end)
    free = trial_days(start, end, trial_end)
    first = inputs.plans[inputs.changes[0].from_plan_id] if inputs.changes else inputs.plan_at_end
    lines: list[LineJson] = []
    if first.fixed_fee:
        days = period_days - free
        lines.append(
            _line(
                "FIXED_FEE",
                f"{first.display_name or first.id}: fixed fee, {days} of {period_days} days",
                first.id,
                days,
                pricing.round_minor(_fee(first, days, period_days)),
            )
        )
    for change in inputs.changes:
        day = dt.datetime.combine(as_utc(change.change_time).date(), dt.time(), dt.UTC)
        # The days from the change's day to the period's end that are not trial days.
        days = max(period_days - max((max(day, start) - start) // DAY, free), 0)
        old, new = inputs.plans[change.from_plan_id], inputs.plans[change.to_plan_id]
        since = day.date().isoformat()
        if old.fixed_fee:
            lines.append(
                _line(
                    "PRORATION",
                    f"Unused time on {old.display_name or old.id} from {since}, {days} days",
                    old.id,
                    days,
                    -pricing.round_minor(_fee(old, days, period_days)),
                )
            )
        if new.fixed_fee:
            lines.append(
                _line(
                    "PRORATION",
                    f"Remaining time on {new.display_name or new.id} from {since}, {days} days",
                    new.id,
                    days,
                    pricing.round_minor(_fee(new, days, period_days)),
                )
            )
    plan = inputs.plan_at_end
    for stored in sorted(plan.charges, key=lambda c: c["meter"]):
        charge = charge_of(stored)
        rated = pricing.rate(charge, _decimal(inputs.usage.get(charge.meter, 0.0)))
        lines.append(
            LineJson(
                kind="USAGE",
                description=f"{charge.meter}, {charge.model.value.lower().replace('_', ' ')}",
                plan_id=plan.id,
                meter=charge.meter,
                quantity=float(rated.quantity),
                included_quantity=float(rated.included),
                tiers=[
                    {"tier": p.tier, "quantity": float(p.quantity), "amount": str(p.amount)}
                    for p in rated.tiers
                ],
                amount=rated.amount,
            )
        )
    subtotal = sum(line["amount"] for line in lines)
    return Draft(plan.id, plan.currency_code, lines, subtotal, subtotal)


def _line(kind: str, description: str, plan_id: str, days: int, amount: int) -> LineJson:
    return LineJson(
        kind=kind,
        description=description,
        plan_id=plan_id,
        meter="",
        quantity=float(days),
        included_quantity=0.0,
        tiers=[],
        amount=amount,
    )


def invoice_id(start: dt.datetime) -> str:
    """Returns the ID of the invoice of the period starting at ``start``: ``period-{yyyy}-{mm}``."""
    return f"period-{start.year:04d}-{start.month:02d}"


def invoice_number(issuer: str, year: int, sequence: int) -> str:
    """Returns an invoice number, ``{issuer}-{year}-{sequence:06d}`` (``ORC-2026-000001``)."""
    return f"{issuer}-{year:04d}-{sequence:06d}"
