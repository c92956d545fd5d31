"""Retail and supply tools: economic order quantity with reorder point, RFM segments, price elasticity."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from services.agent.catalog.bounds import at_most
from services.agent.tools import Tool, ToolError


def reorder_plan(args: dict[str, Any]) -> dict[str, Any]:
    """Economic order quantity, order cycle and reorder point with safety stock.

    ``EOQ = sqrt(2 D S / H)`` (F. W. Harris, "How Many Parts to Make at Once",
    Factory 1913); reorder point ``d L + z sigma_d sqrt(L)`` with ``d`` the daily
    demand ``D / working_days``, ``L`` the lead time in days and ``z`` the standard
    normal quantile of the cycle service level; as worked in J. Heizer and B.
    Render, *Operations Management*, chapter "Inventory Management" (D = 1,000, S =
    10, H = 0.50 gives 200 units; d = 15, sigma = 5, L = 2, 90 % gives 39).

    Returns:
        ``eoq`` (units, to 0.1), ``orders_per_year``, ``days_between_orders``,
        ``annual_ordering_cost``, ``annual_holding_cost``, ``total_annual_cost``,
        ``daily_demand``, ``safety_stock`` and ``reorder_point`` (units).

    Raises:
        ToolError: A demand, cost or working-day count that is not positive.
    """
    demand = float(args.get("annual_demand", 0))
    order_cost = float(args.get("order_cost", 0))
    holding = float(args.get("holding_cost_per_unit_year", 0))
    days = float(args.get("working_days_per_year", 250))
    if min(demand, order_cost, holding, days) <= 0:
        raise ToolError(
            "annual_demand, order_cost, holding_cost_per_unit_year and working days must be positive"
        )
    eoq = math.sqrt(2 * demand * order_cost / holding)
    orders = demand / eoq
    daily = demand / days
    lead = float(args.get("lead_time_days", 0))
    sigma = float(args.get("daily_demand_std", 0))
    level = float(args.get("service_level", 0.95))
    safety = NormalDist().inv_cdf(level) * sigma * math.sqrt(lead) if sigma > 0 and lead > 0 else 0.0
    return {
        "eoq": round(eoq, 1),
        "orders_per_year": round(orders, 2),
        "days_between_orders": round(days / orders, 1),
        "annual_ordering_cost": round(orders * order_cost, 2),
        "annual_holding_cost": round(eoq / 2 * holding, 2),
        "total_annual_cost": round(orders * order_cost + eoq / 2 * holding, 2),
        "daily_demand": round(daily, 2),
        "safety_stock": round(safety, 1),
        "reorder_point": round(daily * lead + safety, 1),
    }


#: Segments by (R, F) score: (name, least R, least F, most R); a customer is in the first
#: whose bounds hold. The scores are Hughes's; the segment names are the usual reading of
#: the R-F grid in marketing practice, not part of his method.
SEGMENTS = (
    ("champions", 4, 4, 5),
    ("loyal customers", 3, 4, 5),
    ("at risk", 1, 3, 2),
    ("new customers", 4, 1, 5),
    ("potential loyalists", 3, 2, 5),
    ("hibernating", 2, 1, 2),
    ("lost", 1, 1, 1),
    ("needs attention", 1, 1, 5),
)


def _quintile_scores(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Scores 1-5 by quintile of rank (ties share their average rank)."""
    # Imported on first use: the agent service starts without loading SciPy.
    from scipy import stats

    ranks = stats.rankdata(values if higher_is_better else -values, method="average")
    return np.ceil(5 * ranks / len(values)).astype(int).clip(1, 5)


def rfm_segments(args: dict[str, Any]) -> dict[str, Any]:
    """Recency-frequency-monetary (RFM) scores by quintile and a segment per customer.

    Each of recency (days since the last purchase, fewer is better), frequency
    (purchases) and monetary value (spend) is scored 1-5 by the customer's quintile
    among all customers (A. M. Hughes, *Strategic Database Marketing*, 1994); the
    segment follows from the R and F scores (:data:`SEGMENTS`).

    Returns:
        ``customers``: each with ``id``, ``r``, ``f``, ``m``, ``rfm`` (e.g. ``"545"``)
        and ``segment``; and ``segments``: customers per segment.

    Raises:
        ToolError: Fewer than 5 customers (quintiles need five).
    """
    customers = args.get("customers") or []
    at_most(customers, "customers")
    if len(customers) < 5:
        raise ToolError("RFM quintiles need at least 5 customers")
    recency = np.array([float(c["recency_days"]) for c in customers])
    frequency = np.array([float(c["frequency"]) for c in customers])
    monetary = np.array([float(c["monetary"]) for c in customers])
    r, f, m = (
        _quintile_scores(recency, False),
        _quintile_scores(frequency, True),
        _quintile_scores(monetary, True),
    )
    scored = []
    counts: dict[str, int] = {}
    for i, customer in enumerate(customers):
        segment = next(
            name for name, r_min, f_min, r_max in SEGMENTS if r_min <= r[i] <= r_max and f[i] >= f_min
        )
        counts[segment] = counts.get(segment, 0) + 1
        scored.append(
            {
                "id": str(customer.get("id", i)),
                "r": int(r[i]),
                "f": int(f[i]),
                "m": int(m[i]),
                "rfm": f"{r[i]}{f[i]}{m[i]}",
                "segment": segment,
            }
        )
    return {"customers": scored, "segments": counts}


def _kind(elasticity: float) -> str:
    size = abs(elasticity)
    return "unit elastic" if math.isclose(size, 1, abs_tol=1e-9) else "elastic" if size > 1 else "inelastic"


def price_elasticity(args: dict[str, Any]) -> dict[str, Any]:
    """Price elasticity of demand from price and quantity observations.

    Two observations: the midpoint (arc) elasticity,
    ``((Q2 - Q1) / ((Q1 + Q2) / 2)) / ((P2 - P1) / ((P1 + P2) / 2))`` (N. G. Mankiw,
    *Principles of Economics*, chapter 5: 4 to 6 dollars, 120 to 80 units gives
    -1.0). Three or more: the slope of the least-squares fit of ``ln Q`` on ``ln P``
    (the constant-elasticity demand curve), with its standard error and R²
    (``scipy.stats.linregress``).

    Returns:
        ``elasticity`` (to 4 places), ``method`` (``midpoint`` or ``log-log
        regression``), ``kind`` (elastic, inelastic, unit elastic); the regression adds
        ``standard_error`` and ``r_squared``.

    Raises:
        ToolError: Fewer than two observations, lists of unequal length, a price or
            quantity that is not positive, or prices that are all equal.
    """
    at_most(args.get("prices") or [], "prices")
    prices = np.asarray(args.get("prices") or [], dtype=float)
    quantities = np.asarray(args.get("quantities") or [], dtype=float)
    if prices.size < 2 or prices.size != quantities.size:
        raise ToolError("give at least two prices and as many quantities")
    if (prices <= 0).any() or (quantities <= 0).any():
        raise ToolError("prices and quantities must be positive")
    if np.ptp(prices) == 0:
        raise ToolError("the prices must not all be equal")
    if prices.size == 2:
        (p1, p2), (q1, q2) = prices, quantities
        value = ((q2 - q1) / ((q1 + q2) / 2)) / ((p2 - p1) / ((p1 + p2) / 2))
        return {"elasticity": round(float(value), 4), "method": "midpoint", "kind": _kind(value)}
    # Imported on first use: the agent service starts without loading SciPy.
    from scipy import stats

    fit = stats.linregress(np.log(prices), np.log(quantities))
    return {
        "elasticity": round(float(fit.slope), 4),
        "method": "log-log regression",
        "kind": _kind(float(fit.slope)),
        "standard_error": round(float(fit.stderr), 4),
        "r_squared": round(float(fit.rvalue**2), 4),
    }


TOOLS: tuple[Tool, ...] = (
    Tool(
        id="reorder_plan",
        description=(
            "Economic order quantity (EOQ), orders per year, costs, safety stock and reorder point "
            "from annual demand, ordering cost, holding cost, lead time and demand variability."
        ),
        parameters={
            "type": "object",
            "properties": {
                "annual_demand": {"type": "number", "exclusiveMinimum": 0},
                "order_cost": {"type": "number", "exclusiveMinimum": 0},
                "holding_cost_per_unit_year": {"type": "number", "exclusiveMinimum": 0},
                "lead_time_days": {"type": "number", "minimum": 0, "maximum": 365},
                "daily_demand_std": {"type": "number", "minimum": 0},
                "service_level": {"type": "number", "enum": [0.8, 0.85, 0.9, 0.95, 0.975, 0.99]},
                "working_days_per_year": {"type": "number", "exclusiveMinimum": 0, "maximum": 366},
            },
            "required": ["annual_demand", "order_cost", "holding_cost_per_unit_year"],
        },
        function=reorder_plan,
    ),
    Tool(
        id="rfm_segments",
        description=(
            "Scores customers 1-5 on recency, frequency and monetary value (RFM quintiles) and "
            "names each customer's segment (champions, loyal, at risk, lost, ...)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "customers": {
                    "type": "array",
                    "minItems": 5,
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "recency_days": {"type": "number", "minimum": 0},
                            "frequency": {"type": "number", "minimum": 0},
                            "monetary": {"type": "number", "minimum": 0},
                        },
                        "required": ["recency_days", "frequency", "monetary"],
                    },
                }
            },
            "required": ["customers"],
        },
        function=rfm_segments,
    ),
    Tool(
        id="price_elasticity",
        description=(
            "Price elasticity of demand from observed prices and quantities sold: midpoint formula for "
            "two observations, log-log regression for more."
        ),
        parameters={
            "type": "object",
            "properties": {
                "prices": {"type": "array", "items": {"type": "number"}, "minItems": 2},
                "quantities": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 2,
                },
            },
            "required": ["prices", "quantities"],
        },
        function=price_elasticity,
    ),
)
