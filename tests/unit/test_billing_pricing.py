"""Rating arithmetic against worked examples of Stripe's and Lago's documentation, rounding and proration."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from services.billing import currencies, invoices, pricing
from services.billing.models import ChargeJson, PlanChangeRow, PlanRow, SubscriptionRow
from services.billing.pricing import Charge, ChargeModel, Tier

D = Decimal
# Cents per dollar: prices below are in minor units (cents), as the contract's.
C = 100


def test_lago_graduated_example() -> None:
    """Lago, "Graduated" charge model (getlago.com/docs/guide/plans/charges/charge-models/graduated):
    $1 per unit for the first 100 units, then $0.50 per unit for the next 100, then $0.10.

    250 units: 100 x $1 + 100 x $0.50 + 50 x $0.10 = $155.00.
    """
    charge = Charge(
        "agent_runs",
        ChargeModel.GRADUATED,
        tiers=(Tier(D(100), D(1 * C)), Tier(D(200), D("50")), Tier(None, D("10"))),
    )
    rated = pricing.rate(charge, D(250))
    assert rated.amount == 155_00
    assert [(p.tier, p.quantity, p.amount) for p in rated.tiers] == [
        (0, D(100), D(100_00)),
        (1, D(100), D(50_00)),
        (2, D(50), D(5_00)),
    ]


def test_graduated_with_flat_amounts_example() -> None:
    """Graduated tiers with flat fees, after the graduated example of zuplo's pricing-models page
    (zuplo.com/docs/articles/monetization/pricing-models): "(1,000 x $0.10) + (9,000 x $0.05) +
    (5,000 x $0.01) = $600", plus a $10 flat amount on each tier reached (Stripe's ``flat_amount``,
    "Price for the entire tier"): $630.
    """
    charge = Charge(
        "agent_runs",
        ChargeModel.GRADUATED,
        tiers=(
            Tier(D(1000), D("10"), D(10 * C)),
            Tier(D(10000), D("5"), D(10 * C)),
            Tier(None, D("1"), D(10 * C)),
        ),
    )
    assert pricing.rate(charge, D(15000)).amount == 630_00
    # Only the tiers reached add their flat amount: 500 units are 500 x $0.10 + $10.
    assert pricing.rate(charge, D(500)).amount == 60_00
    assert pricing.rate(charge, D(0)).amount == 0


def test_lago_volume_example() -> None:
    """Lago, "Volume" charge model (getlago.com/docs/guide/plans/charges/charge-models/volume): tiers
    0-10,000 at $0.0010, 10,001-50,000 at $0.0008, 50,001-100,000 at $0.0006, then $0.0004, each with a
    $10 fixed fee; "65,000 API calls would cost 65,000 x $0.0006 + $10 = $49".
    """
    flat = D(10 * C)
    charge = Charge(
        "agent_runs",
        ChargeModel.VOLUME,
        tiers=(
            Tier(D(10_000), D("0.10"), flat),
            Tier(D(50_000), D("0.08"), flat),
            Tier(D(100_000), D("0.06"), flat),
            Tier(None, D("0.04"), flat),
        ),
    )
    rated = pricing.rate(charge, D(65_000))
    assert rated.amount == 49_00
    assert [(p.tier, p.quantity) for p in rated.tiers] == [(2, D(65_000))]
    # On a boundary the lower tier prices: 10,000 x $0.0010 + $10 = $20.
    assert pricing.rate(charge, D(10_000)).amount == 20_00


def test_lago_package_example_with_free_units() -> None:
    """Lago, "Package" charge model (getlago.com/docs/guide/plans/charges/charge-models/package): $5 per
    100 units, the first 100 free; "201 units would cost $0 (first 100 units) + $5 (next 100 units) + $5
    (last unit) = $10".
    """
    charge = Charge(
        "agent_runs", ChargeModel.PACKAGE, unit_amount=D(5 * C), package_size=100, included_quantity=D(100)
    )
    rated = pricing.rate(charge, D(201))
    assert (rated.included, rated.billable, rated.amount) == (D(100), D(101), 10_00)
    assert pricing.rate(charge, D(100)).amount == 0
    assert pricing.rate(charge, D(200)).amount == 5_00


def test_included_quantity_comes_off_before_the_tiers() -> None:
    """1,000 free units, then graduated from the first billable unit: 1,500 units bill 500 at tier 1."""
    charge = Charge(
        "agent_runs",
        ChargeModel.GRADUATED,
        tiers=(Tier(D(400), D(2)), Tier(None, D(1))),
        included_quantity=D(1000),
    )
    rated = pricing.rate(charge, D(1500))
    assert (rated.billable, rated.amount) == (D(500), 400 * 2 + 100 * 1)


def test_sub_cent_unit_price_is_exact_and_rounded_once_half_up() -> None:
    """$0.000002 a token is 0.0002 cents: 12,345,678 tokens are 2469.1356 cents, one rounding: 2469."""
    charge = Charge("model_input_tokens", unit_amount=D("0.0002"))
    assert pricing.rate(charge, D(12_345_678)).amount == 2469
    # Half up: 2,500 tokens are exactly 0.5 cent, billed 1 cent; 2,499 are 0.4998, billed 0.
    assert pricing.rate(charge, D(2500)).amount == 1
    assert pricing.rate(charge, D(2499)).amount == 0
    # Rounded once per line, not per tier: three tiers of 0.4 cent each are 1.2 cents, billed 1.
    tiers = Charge(
        "agent_runs",
        ChargeModel.GRADUATED,
        tiers=(Tier(D(1), D("0.4")), Tier(D(2), D("0.4")), Tier(None, D("0.4"))),
    )
    assert pricing.rate(tiers, D(3)).amount == 1


def test_charge_rules() -> None:
    bad = Charge(
        "agent_runs",
        ChargeModel.GRADUATED,
        tiers=(Tier(D(10), D(1)), Tier(D(5), D(1)), Tier(None, D(1))),
        hard_limit=10,
        soft_limit=20,
    )
    assert pricing.violations(bad, "c") == [
        ("c.soft_limit", "must not be above hard_limit"),
        ("c.tiers[1].up_to", "must be above the previous tier's up_to and 0"),
    ]
    assert pricing.violations(Charge("x", ChargeModel.PACKAGE, package_size=0), "c") == [
        ("c.package_size", "must be at least 1 for MODEL_PACKAGE")
    ]
    assert pricing.violations(Charge("x", ChargeModel.VOLUME, tiers=(Tier(D(5)),)), "c") == [
        ("c.tiers[0].up_to", "the last tier is open: leave up_to empty")
    ]


def test_currencies_are_iso_4217_with_their_minor_units() -> None:
    assert currencies.minor_digits("USD") == 2
    assert currencies.minor_digits("JPY") == 0
    assert currencies.minor_digits("KWD") == 3
    assert currencies.minor_digits("XYZ") is None
    assert currencies.minor_digits("usd") is None
    assert currencies.format_minor(123_45, "USD") == "123.45 USD"
    assert currencies.format_minor(-5, "USD") == "-0.05 USD"
    assert currencies.format_minor(1234, "JPY") == "1234 JPY"


# Proration by the day ------------------------------------------------------------------------------------

NOV = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
DEC = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _plan(plan_id: str, fee: int, charges: list[ChargeJson] | None = None) -> PlanRow:
    return PlanRow(
        plan_id, plan_id.title(), "", "USD", fee, charges or [], 0.0, False, 0, "ACTIVE", None, NOV, NOV
    )


def _subscription(plan_id: str, trial_end: dt.datetime | None = None) -> SubscriptionRow:
    return SubscriptionRow("t", plan_id, "ACTIVE", trial_end, False, None, NOV, NOV)


def test_plan_change_is_prorated_by_the_day() -> None:
    """Basic ($30.00) to Pro ($90.00) on 16 November: 15 of the 30 days left, the 16th counted as Pro's.

    Lines: Basic's fee $30.00; a credit of 15/30 x $30.00 = -$15.00; a charge of 15/30 x $90.00 = $45.00;
    total $60.00 (= 15 days of Basic + 15 days of Pro).
    """
    basic, pro = _plan("basic", 30_00), _plan("pro", 90_00)
    change = PlanChangeRow("t", "c1", dt.datetime(2026, 11, 16, 15, 30, tzinfo=dt.UTC), "basic", "pro")
    inputs = invoices.InvoiceInputs(_subscription("pro"), pro, {"basic": basic, "pro": pro}, [change], {})
    draft = invoices.build(inputs, NOV, DEC)
    assert [(line["kind"], line["plan_id"], line["quantity"], line["amount"]) for line in draft.lines] == [
        ("FIXED_FEE", "basic", 30.0, 30_00),
        ("PRORATION", "basic", 15.0, -15_00),
        ("PRORATION", "pro", 15.0, 45_00),
    ]
    assert draft.total == draft.subtotal == 60_00


def test_proration_rounds_each_line_once() -> None:
    """$10.00 to $20.00 on 2 November, 29 of 30 days: -966.67 cents is -967, 1933.33 is 1933."""
    a, b = _plan("a", 10_00), _plan("b", 20_00)
    change = PlanChangeRow("t", "c1", dt.datetime(2026, 11, 2, tzinfo=dt.UTC), "a", "b")
    draft = invoices.build(
        invoices.InvoiceInputs(_subscription("b"), b, {"a": a, "b": b}, [change], {}), NOV, DEC
    )
    assert [line["amount"] for line in draft.lines] == [10_00, -967, 1933]
    assert draft.total == 10_00 - 967 + 1933


def test_trial_days_are_free_of_the_fixed_fee() -> None:
    """A trial to 10 November 12:00 frees 10 days (the 10th too): 20/30 of $90.00 = $60.00."""
    pro = _plan("pro", 90_00)
    subscription = _subscription("pro", dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC))
    draft = invoices.build(invoices.InvoiceInputs(subscription, pro, {"pro": pro}, [], {}), NOV, DEC)
    assert [(line["quantity"], line["amount"]) for line in draft.lines] == [(20.0, 60_00)]


def test_usage_is_rated_by_the_plan_at_the_period_end() -> None:
    charge = ChargeJson(
        meter="agent_runs",
        model="GRADUATED",
        unit_amount="0",
        package_size=1,
        tiers=[
            {"up_to": "100", "unit_amount": "0", "flat_amount": "0"},
            {"up_to": None, "unit_amount": "2.5", "flat_amount": "0"},
        ],
        included_quantity=0.0,
        hard_limit=0.0,
        soft_limit=0.0,
    )
    pro = _plan("pro", 0, [charge])
    draft = invoices.build(
        invoices.InvoiceInputs(_subscription("pro"), pro, {"pro": pro}, [], {"agent_runs": 301}), NOV, DEC
    )
    (line,) = draft.lines
    assert (line["kind"], line["quantity"], line["amount"]) == ("USAGE", 301.0, 503)  # 201 x 2.5 = 502.5
    assert [t["tier"] for t in line["tiers"]] == [0, 1]
