"""Rating: what a quantity of a meter costs under a plan's charge, in integer minor units.

Pure arithmetic, no I/O. Money is never a float: prices are :class:`decimal.Decimal`
amounts in the currency's minor unit (cents for USD), as Stripe's
``unit_amount_decimal`` is ("a decimal value in cents with at most 12 decimal
places"), so a price below a cent (0.0002 cents, $0.000002 a token) is exact.

Rounding rule: a line item's amount is computed exactly and rounded **once**, to a
whole minor unit, **half up** (0.5 cent becomes 1 cent), the commercial rounding
Stripe applies to decimal amounts and Chargebee states for line items ("rounded off
to ... decimal places based on the currency format"). Tiers, packages and flat fees
of one charge add up before that one rounding; totals are sums of rounded lines, so
an invoice adds up to the cent.

Charge models (the names Stripe's and Lago's documentation use):

* ``PER_UNIT``: ``billable * unit_amount``.
* ``GRADUATED``: the billable quantity fills the tiers in order; each tier's part is
  priced at its ``unit_amount``, plus the ``flat_amount`` of every tier it reaches.
* ``VOLUME``: the tier the whole billable quantity falls in prices every unit, plus
  that tier's ``flat_amount``.
* ``PACKAGE``: ``ceil(billable / package_size) * package_amount``: a started package
  is a whole one (Lago: "$5 per 100 units ... 201 units would cost ... $10").

``included_quantity`` (the free allowance) is taken off first; the model rates what
is left, ``billable = max(quantity - included_quantity, 0)`` (Lago's free units).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

#: Upper bound on a charge's tiers (the contract's).
MAX_TIERS = 20


class ChargeModel(StrEnum):
    """How a charge prices a quantity; ``Charge.Model.MODEL_<value>`` on the wire."""

    PER_UNIT = "PER_UNIT"
    GRADUATED = "GRADUATED"
    VOLUME = "VOLUME"
    PACKAGE = "PACKAGE"


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier of a graduated or volume charge.

    Attributes:
        up_to: The last quantity in the tier, inclusive; None for the last, open tier.
        unit_amount: Price of one unit in the tier, minor units (may have decimals).
        flat_amount: Price of reaching the tier, minor units.
    """

    up_to: Decimal | None
    unit_amount: Decimal = Decimal(0)
    flat_amount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Charge:
    """What a plan charges for one meter, and its limits.

    Attributes:
        meter: The meter, e.g. ``model_input_tokens``.
        model: How a quantity is priced.
        unit_amount: ``PER_UNIT``: price of a unit; ``PACKAGE``: price of a package. Minor units.
        package_size: ``PACKAGE``: units in a package, at least 1.
        tiers: ``GRADUATED`` and ``VOLUME``: the tiers, by ``up_to``; the last one open.
        included_quantity: Units of each period that are free, taken off before rating.
        hard_limit: The most that may be used in a period (reservations refuse more); 0: none.
        soft_limit: The usage of a period at which the tenant is alerted; 0: none.
    """

    meter: str
    model: ChargeModel = ChargeModel.PER_UNIT
    unit_amount: Decimal = Decimal(0)
    package_size: int = 1
    tiers: tuple[Tier, ...] = ()
    included_quantity: Decimal = Decimal(0)
    hard_limit: float = 0
    soft_limit: float = 0


@dataclass(frozen=True, slots=True)
class TierPart:
    """The part of a quantity one tier priced.

    Attributes:
        tier: The tier's index in the charge.
        quantity: Units priced in it.
        amount: Their price plus the tier's flat amount, minor units, not rounded.
    """

    tier: int
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Rated:
    """A quantity of a meter, priced.

    Attributes:
        quantity: The period's usage.
        included: The part of it that was free.
        billable: ``quantity - included``, the part that was rated.
        amount: The price, minor units, rounded once (half up).
        tiers: The tiers applied (graduated: each reached; volume: the one).
    """

    quantity: Decimal
    included: Decimal
    billable: Decimal
    amount: int
    tiers: tuple[TierPart, ...] = field(default=())


def round_minor(amount: Decimal) -> int:
    """Returns ``amount`` (minor units) rounded to a whole minor unit, half up (the module's rule)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def rate(charge: Charge, quantity: Decimal) -> Rated:
    """Returns what ``quantity`` of the charge's meter costs in one period.

    Args:
        charge: The charge, valid (:func:`violations` finds nothing).
        quantity: The period's usage, not negative.

    Returns:
        The rated quantity; its ``amount`` rounded once, half up.
    """
    included = min(quantity, charge.included_quantity)
    billable = quantity - included
    parts: tuple[TierPart, ...] = ()
    if charge.model == ChargeModel.PER_UNIT:
        exact = billable * charge.unit_amount
    elif charge.model == ChargeModel.PACKAGE:
        packages = math.ceil(billable / charge.package_size) if billable > 0 else 0
        exact = Decimal(packages) * charge.unit_amount
    elif charge.model == ChargeModel.GRADUATED:
        parts = _graduated(charge.tiers, billable)
        exact = sum((p.amount for p in parts), Decimal(0))
    else:
        parts = _volume(charge.tiers, billable)
        exact = sum((p.amount for p in parts), Decimal(0))
    return Rated(quantity, included, billable, round_minor(exact), parts)


def _graduated(tiers: Sequence[Tier], billable: Decimal) -> tuple[TierPart, ...]:
    """Returns each tier's part of ``billable`` filling the tiers in order (none when it is 0)."""
    parts = []
    floor = Decimal(0)
    for i, tier in enumerate(tiers):
        if billable <= floor:
            break
        top = billable if tier.up_to is None else min(billable, tier.up_to)
        units = top - floor
        parts.append(TierPart(i, units, units * tier.unit_amount + tier.flat_amount))
        if tier.up_to is None:
            break
        floor = tier.up_to
    return tuple(parts)


def _volume(tiers: Sequence[Tier], billable: Decimal) -> tuple[TierPart, ...]:
    """Returns the one tier ``billable`` falls in, pricing all of it (none when it is 0)."""
    if billable <= 0:
        return ()
    for i, tier in enumerate(tiers):
        if tier.up_to is None or billable <= tier.up_to:
            return (TierPart(i, billable, billable * tier.unit_amount + tier.flat_amount),)
    raise AssertionError("a valid charge's last tier is open")


def violations(charge: Charge, prefix: str) -> list[tuple[str, str]]:
    """Returns ``(field, description)`` for each rule ``charge`` breaks; none when it is valid.

    Rules: amounts and quantities are not negative; ``PACKAGE`` has a ``package_size``
    of at least 1; ``GRADUATED`` and ``VOLUME`` have 1-20 tiers whose ``up_to``
    increase, the last one open and only the last; other models have no tiers; a
    soft limit is not above a hard limit.
    """
    found = []
    if charge.unit_amount < 0:
        found.append((f"{prefix}.unit_amount", "must not be negative"))
    if charge.included_quantity < 0:
        found.append((f"{prefix}.included_quantity", "must not be negative"))
    if charge.hard_limit < 0 or not math.isfinite(charge.hard_limit):
        found.append((f"{prefix}.hard_limit", "must be a finite number, not negative"))
    if charge.soft_limit < 0 or not math.isfinite(charge.soft_limit):
        found.append((f"{prefix}.soft_limit", "must be a finite number, not negative"))
    elif charge.hard_limit and charge.soft_limit > charge.hard_limit:
        found.append((f"{prefix}.soft_limit", "must not be above hard_limit"))
    tiered = charge.model in (ChargeModel.GRADUATED, ChargeModel.VOLUME)
    if charge.model == ChargeModel.PACKAGE and charge.package_size < 1:
        found.append((f"{prefix}.package_size", "must be at least 1 for MODEL_PACKAGE"))
    if not tiered:
        if charge.tiers:
            found.append((f"{prefix}.tiers", "only MODEL_GRADUATED and MODEL_VOLUME have tiers"))
        return found
    if not 1 <= len(charge.tiers) <= MAX_TIERS:
        found.append((f"{prefix}.tiers", f"needs 1-{MAX_TIERS} tiers"))
        return found
    previous = Decimal(0)
    for i, tier in enumerate(charge.tiers):
        path = f"{prefix}.tiers[{i}]"
        last = i == len(charge.tiers) - 1
        if tier.unit_amount < 0:
            found.append((f"{path}.unit_amount", "must not be negative"))
        if tier.flat_amount < 0:
            found.append((f"{path}.flat_amount", "must not be negative"))
        if tier.up_to is None:
            if not last:
                found.append((f"{path}.up_to", "only the last tier is open (no up_to)"))
        elif last:
            found.append((f"{path}.up_to", "the last tier is open: leave up_to empty"))
        elif tier.up_to <= previous:
            found.append((f"{path}.up_to", "must be above the previous tier's up_to and 0"))
        else:
            previous = tier.up_to
    return found
