"""Manufacturing tools: Shewhart control charts with the Western Electric rules, MTBF, Weibull."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from services.agent.catalog.bounds import at_most
from services.agent.tools import Tool, ToolError

#: d2 for moving ranges of two points: the mean range of two standard normal values, 2/sqrt(pi).
D2_MOVING_RANGE = 1.128


def _runs(sides: np.ndarray, window: int, needed: int) -> list[int]:
    """Indices ending a window of ``window`` points of which ``needed`` are on one side (+1 or -1)."""
    hits = []
    for end in range(window - 1, len(sides)):
        part = sides[end - window + 1 : end + 1]
        if (part == 1).sum() >= needed or (part == -1).sum() >= needed:
            hits.append(end)
    return hits


def western_electric(values: np.ndarray, center: float, sigma: float) -> dict[str, list[int]]:
    """Points that break each Western Electric rule, by rule.

    Source: Western Electric Company, *Statistical Quality Control Handbook* (1956),
    section 1B "Tests for unnatural patterns": 1. one point beyond 3 sigma; 2. two
    of three successive points beyond 2 sigma on the same side; 3. four of five
    successive points beyond 1 sigma on the same side; 4. eight successive points on
    the same side of the centre line. (Also in the NIST/SEMATECH e-Handbook, 6.3.2.)

    Returns:
        ``rule_1`` to ``rule_4``: indices of the points at which a rule is broken (the
        last point of the run, and for rules 2 and 3 only when that point is itself beyond
        the limit, so one run is reported once at each point that extends it).
    """
    z = (values - center) / sigma

    def beyond(limit: float) -> np.ndarray:
        return np.where(z > limit, 1, np.where(z < -limit, -1, 0))

    side = np.sign(z)
    rule_2 = [i for i in _runs(beyond(2), 3, 2) if abs(z[i]) > 2]
    rule_3 = [i for i in _runs(beyond(1), 5, 4) if abs(z[i]) > 1]
    return {
        "rule_1": [int(i) for i in np.flatnonzero(np.abs(z) > 3)],
        "rule_2": rule_2,
        "rule_3": rule_3,
        "rule_4": _runs(side, 8, 8),
    }


def control_chart(args: dict[str, Any]) -> dict[str, Any]:
    """An individuals (X) Shewhart control chart with the Western Electric rules.

    Centre line and sigma are given (from an earlier, in-control study), or come from
    the data: the mean and the average moving range over d2 = 1.128 (NIST/SEMATECH
    e-Handbook of Statistical Methods, 6.3.2.2 "Individuals control charts"; W. A.
    Shewhart, *Economic Control of Quality of Manufactured Product*, 1931).

    Returns:
        ``center``, ``sigma``, ``upper_control_limit``, ``lower_control_limit`` (3 sigma),
        ``violations`` by rule (see :func:`western_electric`) and ``in_control``.

    Raises:
        ToolError: Fewer than 2 values, a sigma that is not positive, or data with no
            variation to estimate sigma from.
    """
    at_most(args.get("values") or [], "values")
    values = np.asarray(args.get("values") or [], dtype=float)
    if values.size < 2:
        raise ToolError("a control chart needs at least 2 values")
    center = float(args["center"]) if args.get("center") is not None else float(values.mean())
    if args.get("sigma") is not None:
        sigma = float(args["sigma"])
    else:
        sigma = float(np.abs(np.diff(values)).mean()) / D2_MOVING_RANGE
    if sigma <= 0:
        raise ToolError("sigma must be positive (the values do not vary)")
    violations = western_electric(values, center, sigma)
    return {
        "center": round(center, 6),
        "sigma": round(sigma, 6),
        "upper_control_limit": round(center + 3 * sigma, 6),
        "lower_control_limit": round(center - 3 * sigma, 6),
        "violations": violations,
        "in_control": not any(violations.values()),
    }


def reliability(args: dict[str, Any]) -> dict[str, Any]:
    """MTBF, and from failure times a Weibull fit with reliability at a mission time.

    MTBF is the total operating time over the number of failures (MIL-HDBK-338B,
    *Electronic Reliability Design Handbook*, section 5). Given times to failure,
    the two-parameter Weibull distribution is fitted by maximum likelihood
    (``scipy.stats.weibull_min.fit`` with location 0); reliability
    ``R(t) = exp(-(t / eta)^beta)``, B10 life ``eta (-ln 0.9)^(1/beta)`` and mean life
    ``eta Gamma(1 + 1/beta)``. Checked against the ball bearing data of J. Lieblein
    and M. Zelen (J. Res. NBS 57, 1956), whose maximum-likelihood fit J. F. Lawless,
    *Statistical Models and Methods for Lifetime Data*, reports as beta 2.10, eta 81.9.

    Returns:
        ``mtbf`` when ``operating_hours`` and ``failures`` are given; ``weibull``
        (``shape_beta``, ``scale_eta``, ``mean_life``, ``b10_life``, ``failure_mode``:
        infant mortality, random or wear-out) when ``failure_times`` are; and
        ``reliability_at_mission`` with a ``mission_time``.

    Raises:
        ToolError: Neither input, fewer than 3 failure times, or a time that is not positive.
    """
    result: dict[str, Any] = {}
    hours, failures = args.get("operating_hours"), args.get("failures")
    if hours is not None and failures is not None:
        if int(failures) < 1:
            raise ToolError("MTBF needs at least one failure")
        result["mtbf"] = round(float(hours) / int(failures), 2)
    at_most(args.get("failure_times") or [], "failure_times")
    times = np.asarray(args.get("failure_times") or [], dtype=float)
    mission = args.get("mission_time")
    if times.size:
        if times.size < 3 or (times <= 0).any():
            raise ToolError("a Weibull fit needs at least 3 positive failure times")
        # Imported on first use: the agent service starts without loading SciPy.
        from scipy import special, stats

        beta, _, eta = stats.weibull_min.fit(times, floc=0)
        mode = "infant mortality" if beta < 0.95 else "random" if beta <= 1.05 else "wear-out"
        result["weibull"] = {
            "shape_beta": round(float(beta), 4),
            "scale_eta": round(float(eta), 4),
            "mean_life": round(float(eta * special.gamma(1 + 1 / beta)), 4),
            "b10_life": round(float(eta * (-math.log(0.9)) ** (1 / beta)), 4),
            "failure_mode": mode,
        }
        if mission is not None:
            result["reliability_at_mission"] = round(math.exp(-((float(mission) / eta) ** beta)), 4)
    elif mission is not None and "mtbf" in result:
        result["reliability_at_mission"] = round(math.exp(-float(mission) / result["mtbf"]), 4)
    if not result:
        raise ToolError("give operating_hours and failures (MTBF), or failure_times (Weibull)")
    return result


TOOLS: tuple[Tool, ...] = (
    Tool(
        id="control_chart",
        description=(
            "Shewhart individuals control chart: centre line, 3-sigma limits and the points breaking the "
            "Western Electric rules, from a series of measurements."
        ),
        parameters={
            "type": "object",
            "properties": {
                "values": {"type": "array", "items": {"type": "number"}, "minItems": 2},
                "center": {"type": "number"},
                "sigma": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["values"],
        },
        function=control_chart,
    ),
    Tool(
        id="reliability",
        description=(
            "Mean time between failures from operating hours and failures; Weibull shape, scale, B10 "
            "life and reliability at a mission time from times to failure."
        ),
        parameters={
            "type": "object",
            "properties": {
                "operating_hours": {"type": "number", "exclusiveMinimum": 0},
                "failures": {"type": "integer", "minimum": 0},
                "failure_times": {"type": "array", "items": {"type": "number"}, "minItems": 3},
                "mission_time": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["failure_times"],
        },
        function=reliability,
    ),
)
