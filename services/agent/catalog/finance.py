"""Finance tools: value at risk, transaction anomaly scores, rule-based compliance checks."""

from __future__ import annotations

import functools
import math
from importlib import resources
from statistics import NormalDist
from typing import Any

import celpy
import numpy as np
import yaml

from services.agent.catalog.bounds import at_most
from services.agent.tools import Tool, ToolError

CONFIDENCES = [0.9, 0.95, 0.975, 0.99]
#: Horizons in trading days (Basel's 1 and 10, a week, a month, a quarter, a year), an enum
#: because a grammar-constrained model keeps to an enum but not to a numeric maximum.
HORIZONS = [1, 5, 10, 20, 60, 250]


def value_at_risk(args: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """Value at risk (VaR) of a portfolio, historical or parametric (variance-covariance).

    ``method`` (or ``args["method"]``) is ``historical`` or ``parametric``; the
    catalog offers each as its own tool (``historical_var``, ``parametric_var``), so
    that a model calling one must give the arguments that one needs.

    Historical: the loss at the empirical ``1 - confidence`` quantile of the daily
    returns (the inverted empirical distribution, Hyndman and Fan's definition 1),
    times the portfolio value, scaled to the horizon by the square root of time.
    Parametric: ``z * sqrt(w' C w) * sqrt(horizon_days)`` with ``w`` the positions'
    daily standard deviations in money and ``C`` their correlations, ``z`` the
    standard normal quantile (``statistics.NormalDist``); the method of J.P.
    Morgan/Reuters, *RiskMetrics Technical Document* (1996), worked in J. C. Hull,
    *Options, Futures, and Other Derivatives*, chapter "Value at Risk" (the
    Microsoft/AT&T example).

    Returns:
        ``value_at_risk`` (a positive loss, in the positions' currency, to cents),
        ``method``, ``confidence``, ``horizon_days``; historical adds
        ``observations`` and ``quantile_return``; parametric adds
        ``daily_standard_deviation``.

    Raises:
        ToolError: Too few returns, a negative value or volatility, or a
            correlation matrix that is not square, symmetric, unit-diagonal or in [-1, 1].
    """
    confidence = float(args.get("confidence", 0.99))
    horizon = int(args.get("horizon_days", 1))
    if not 0.5 < confidence < 1:
        raise ToolError("confidence must be between 0.5 and 1, e.g. 0.99")
    if horizon < 1:
        raise ToolError("horizon_days must be at least 1")
    scale = math.sqrt(horizon)
    if (method or args.get("method", "historical")) == "historical":
        at_most(args.get("returns") or [], "returns")
        returns = np.asarray(args.get("returns") or [], dtype=float)
        value = float(args.get("portfolio_value", 0))
        if returns.size < 20:
            raise ToolError("historical VaR needs at least 20 daily returns")
        if value <= 0:
            raise ToolError("portfolio_value must be positive")
        tail = round(1 - confidence, 12)  # 1 - 0.99 is 0.010000000000000009 in binary
        quantile = float(np.quantile(returns, tail, method="inverted_cdf"))
        return {
            "method": "historical",
            "confidence": confidence,
            "horizon_days": horizon,
            "observations": int(returns.size),
            "quantile_return": quantile,
            "value_at_risk": round(max(0.0, -quantile) * value * scale, 2),
        }
    positions = args.get("positions") or []
    at_most(positions, "positions", 50)
    if not positions:
        raise ToolError("parametric VaR needs at least one position")
    sigmas = np.array([float(p["value"]) * float(p["daily_volatility"]) for p in positions])
    if (sigmas < 0).any():
        raise ToolError("position values and volatilities must not be negative")
    n = len(positions)
    correlations = np.asarray(args.get("correlations") or np.eye(n), dtype=float)
    if (
        correlations.shape != (n, n)
        or not np.allclose(correlations, correlations.T)
        or not np.allclose(np.diag(correlations), 1)
        or (np.abs(correlations) > 1).any()
    ):
        raise ToolError(f"correlations must be a symmetric {n}x{n} matrix with 1 on the diagonal")
    variance = float(sigmas @ correlations @ sigmas)
    daily = math.sqrt(max(variance, 0.0))
    z = NormalDist().inv_cdf(confidence)
    return {
        "method": "parametric",
        "confidence": confidence,
        "horizon_days": horizon,
        "daily_standard_deviation": round(daily, 2),
        "value_at_risk": round(z * daily * scale, 2),
    }


#: Iglewicz and Hoaglin's constant, the 0.75 quantile of the standard normal, which
#: makes the MAD a consistent estimator of the standard deviation.
MAD_CONSTANT = 0.6745


def transaction_anomalies(args: dict[str, Any]) -> dict[str, Any]:
    """Scores transaction amounts by the modified z-score and flags outliers.

    ``M_i = 0.6745 (x_i - median) / MAD`` with MAD the median absolute deviation;
    ``|M_i| > 3.5`` is a potential outlier. Source: B. Iglewicz and D. C. Hoaglin,
    *How to Detect and Handle Outliers* (ASQC, 1993), as given in the NIST/SEMATECH
    e-Handbook of Statistical Methods, section 1.3.5.17. Robust: a few large frauds
    do not inflate the scale they are measured against (as they would a mean and
    standard deviation).

    Returns:
        ``median``, ``mad``, ``threshold``, ``scores`` (one per amount, to 4
        places) and ``anomalies``: the indices and amounts over the threshold.

    Raises:
        ToolError: Fewer than 3 amounts, or all but half of them equal (MAD 0).
    """
    at_most(args.get("amounts") or [], "amounts")
    amounts = np.asarray(args.get("amounts") or [], dtype=float)
    threshold = float(args.get("threshold", 3.5))
    if amounts.size < 3:
        raise ToolError("anomaly scoring needs at least 3 amounts")
    median = float(np.median(amounts))
    mad = float(np.median(np.abs(amounts - median)))
    if mad == 0:
        raise ToolError("more than half the amounts are equal (MAD is 0); the modified z-score is undefined")
    scores = MAD_CONSTANT * (amounts - median) / mad
    flagged = [
        {"index": int(i), "amount": float(amounts[i]), "score": round(float(scores[i]), 4)}
        for i in np.flatnonzero(np.abs(scores) > threshold)
    ]
    return {
        "median": median,
        "mad": mad,
        "threshold": threshold,
        "scores": [round(float(s), 4) for s in scores],
        "anomalies": flagged,
    }


@functools.cache
def compliance_rules() -> tuple[tuple[dict[str, Any], Any], ...]:
    """The rule set of ``compliance_rules.yaml``, each rule with its compiled CEL program.

    Read once (the file ships with the package and changes only with a release).

    Raises:
        ValueError: A rule lacks a field or its condition does not parse (at start-up).
    """
    text = resources.files(__package__).joinpath("compliance_rules.yaml").read_text()
    environment = celpy.Environment()
    rules = []
    for rule in yaml.safe_load(text)["rules"]:
        missing = {"id", "title", "source", "severity", "condition"} - set(rule)
        if missing:
            raise ValueError(f"compliance rule {rule.get('id')!r} lacks {sorted(missing)}")
        try:
            program = environment.program(environment.compile(rule["condition"]))
        except celpy.CELParseError as error:
            raise ValueError(f"compliance rule {rule['id']}: {error}") from None
        rules.append((rule, program))
    return tuple(rules)


def compliance_check(args: dict[str, Any]) -> dict[str, Any]:
    """Checks a transaction against the rule set of ``compliance_rules.yaml`` (rules as data, in CEL).

    Each rule is a CEL condition (cel-spec, evaluated with cel-python) over
    ``transaction`` that is true when the rule is breached; the rules cite their
    regulation (US Bank Secrecy Act rules of 31 CFR chapter X, the OFAC
    comprehensively sanctioned jurisdictions, FATF Recommendation 16).

    Returns:
        ``compliant`` (no rule breached), ``findings`` (``rule``, ``title``,
        ``severity``, ``source`` of each breached rule) and ``rules_checked``.

    Raises:
        ToolError: A rule could not be evaluated on the transaction (a field of the wrong type).
    """
    transaction = {
        "amount": float(args.get("amount", 0)),
        "currency": str(args.get("currency", "USD")).upper(),
        "type": str(args.get("type", "wire")),
        "country": str(args.get("country", "")).upper(),
        "originator_name": str(args.get("originator_name", ""))[:500],
        "originator_address": str(args.get("originator_address", ""))[:500],
        "customer_verified": bool(args.get("customer_verified", False)),
    }
    activation = {"transaction": celpy.json_to_cel(transaction)}
    findings = []
    rules = compliance_rules()
    for rule, program in rules:
        try:
            breached = program.evaluate(activation)
        except celpy.CELEvalError as error:
            raise ToolError(f"rule {rule['id']} could not be evaluated: {str(error.args[0])[:200]}") from None
        if bool(breached):
            findings.append(
                {key: rule[key] for key in ("title", "severity", "source")} | {"rule": rule["id"]}
            )
    return {"compliant": not findings, "findings": findings, "rules_checked": len(rules)}


TOOLS: tuple[Tool, ...] = (
    Tool(
        id="parametric_var",
        description=(
            "Parametric (variance-covariance) value at risk of positions with daily volatilities and, "
            "for several positions, their correlation matrix."
        ),
        parameters={
            "type": "object",
            "properties": {
                "positions": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "value": {"type": "number"},
                            "daily_volatility": {"type": "number"},
                        },
                        "required": ["value", "daily_volatility"],
                    },
                },
                "confidence": {"type": "number", "enum": CONFIDENCES},
                "horizon_days": {"type": "integer", "enum": HORIZONS},
                "correlations": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            },
            "required": ["positions", "confidence", "horizon_days"],
        },
        function=functools.partial(value_at_risk, method="parametric"),
    ),
    Tool(
        id="historical_var",
        description="Historical-simulation value at risk of a portfolio from its daily returns (fractions).",
        parameters={
            "type": "object",
            "properties": {
                "returns": {"type": "array", "items": {"type": "number"}, "minItems": 20},
                "portfolio_value": {"type": "number", "minimum": 0},
                "confidence": {"type": "number", "enum": CONFIDENCES},
                "horizon_days": {"type": "integer", "enum": HORIZONS},
            },
            "required": ["returns", "portfolio_value", "confidence"],
        },
        function=functools.partial(value_at_risk, method="historical"),
    ),
    Tool(
        id="transaction_anomalies",
        description=(
            "Flags unusual transaction amounts by the robust modified z-score (median and MAD); "
            "scores above 3.5 are potential fraud."
        ),
        parameters={
            "type": "object",
            "properties": {
                "amounts": {"type": "array", "items": {"type": "number"}, "minItems": 3},
                "threshold": {"type": "number", "minimum": 0},
            },
            "required": ["amounts"],
        },
        function=transaction_anomalies,
    ),
    Tool(
        id="compliance_check",
        description=(
            "Checks one transaction against anti-money-laundering and sanctions rules "
            "(cash reporting, travel rule, sanctioned countries, unverified customers)."
        ),
        parameters={
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "currency": {"type": "string"},
                "type": {"type": "string", "enum": ["cash", "wire", "card", "crypto"]},
                "country": {"type": "string"},
                "originator_name": {"type": "string"},
                "originator_address": {"type": "string"},
                "customer_verified": {"type": "boolean"},
            },
            "required": ["amount", "type", "country"],
        },
        function=compliance_check,
    ),
)
