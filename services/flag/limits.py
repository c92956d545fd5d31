"""Bounds on tenant-written targeting rules and on evaluation contexts.

A targeting rule is JsonLogic (https://jsonlogic.com/) run by flagd's evaluator
in the flag service's event loop, so its cost must be bounded, or one tenant's
rule stalls every tenant's evaluations. The bound is checked when a rule is
written (:func:`rule_violations`), as a worst case, and upheld when one is
evaluated (:func:`context_problem`):

* a rule has at most :data:`MAX_RULE_NODES` nodes and :data:`MAX_RULE_DEPTH` levels;
* its worst-case cost, in operations, is at most :data:`MAX_RULE_COST`: an
  operator costs :data:`OPERATION_COSTS` (1 unless listed), and an iterating
  operator (``map``, ``filter``, ``reduce``, ``all``, ``some``, ``none``) costs
  its body once per item of the longest array it can be given: an array in the
  rule, or one from the context, which holds at most :data:`MAX_CONTEXT_ITEMS`
  items per array;
* an evaluation context has at most :data:`MAX_CONTEXT_BYTES` bytes,
  :data:`MAX_CONTEXT_DEPTH` levels and :data:`MAX_CONTEXT_ITEMS` items per array;
  a larger one is refused with OpenFeature's ``INVALID_CONTEXT`` error code.

Measured on this project's reference machine, flagd's evaluator runs about one
operation per microsecond, so the worst allowed rule on the largest allowed
context takes about 2 ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.kit.errors import FieldViolation

MAX_RULE_NODES = 2_000
MAX_RULE_DEPTH = 32
MAX_RULE_COST = 2_000
MAX_RULE_BYTES = 64 * 1024
MAX_CONTEXT_BYTES = 16 * 1024
MAX_CONTEXT_DEPTH = 8
MAX_CONTEXT_ITEMS = 100
ITERATING = frozenset({"map", "filter", "reduce", "all", "some", "none"})
#: Operators that do more than one step of work, in operations (hashing, version parsing).
OPERATION_COSTS: Mapping[str, int] = {"fractional": 10, "sem_ver": 10}
#: JsonLogic's ``log`` writes to the service's output: a tenant may not use it.
FORBIDDEN = frozenset({"log"})


class _TooBig(Exception):
    pass


def _walk(logic: Any, depth: int, counts: list[int]) -> tuple[int, int]:
    """Returns ``(worst-case cost, longest array it yields)`` of a JsonLogic value; counts its nodes."""
    counts[0] += 1
    if counts[0] > MAX_RULE_NODES or depth > MAX_RULE_DEPTH:
        raise _TooBig
    if isinstance(logic, list):
        cost = 0
        for item in logic:
            cost += _walk(item, depth + 1, counts)[0]
        return cost, len(logic)
    if not isinstance(logic, dict) or len(logic) != 1:
        return 0, 1
    op, args = next(iter(logic.items()))
    if op in FORBIDDEN:
        raise ValueError(f"the {op!r} operator is not allowed")
    args = args if isinstance(args, list) else [args]
    if op in ITERATING:
        items_cost, items = _walk(args[0], depth + 1, counts) if args else (0, 0)
        body_cost = _walk(args[1], depth + 1, counts)[0] if len(args) > 1 else 0
        for extra in args[2:]:
            items_cost += _walk(extra, depth + 1, counts)[0]
        width = items if op in ("map", "filter") else 1
        return 1 + items_cost + items * max(body_cost, 1), width
    cost, widths = OPERATION_COSTS.get(op, 1), []
    for arg in args:
        arg_cost, width = _walk(arg, depth + 1, counts)
        cost += arg_cost
        widths.append(width)
    if op == "var":
        return cost, MAX_CONTEXT_ITEMS  # a context value may be an array
    if op == "merge":
        return cost, sum(widths)
    return cost, 1


def rule_violations(targeting: Any, size: int) -> list[FieldViolation]:
    """Returns why a targeting rule may not be stored, by the bounds above; empty when it may.

    Args:
        targeting: The rule, as JSON.
        size: Its encoded size in bytes.
    """
    if size > MAX_RULE_BYTES:
        return [FieldViolation("flag.targeting", f"must be at most {MAX_RULE_BYTES} bytes")]
    counts = [0]
    try:
        cost, _ = _walk(targeting, 0, counts)
    except _TooBig:
        return [
            FieldViolation(
                "flag.targeting", f"must have at most {MAX_RULE_NODES} nodes and {MAX_RULE_DEPTH} levels"
            )
        ]
    except ValueError as problem:
        return [FieldViolation("flag.targeting", str(problem))]
    if cost > MAX_RULE_COST:
        return [
            FieldViolation(
                "flag.targeting",
                f"may cost up to {cost} operations for a context of the allowed size; at most "
                f"{MAX_RULE_COST} are allowed (iterating operators multiply their body's cost by up "
                f"to {MAX_CONTEXT_ITEMS} items)",
            )
        ]
    return []


def _too_deep_or_long(value: Any, depth: int) -> bool:
    if depth > MAX_CONTEXT_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_too_deep_or_long(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return len(value) > MAX_CONTEXT_ITEMS or any(_too_deep_or_long(item, depth + 1) for item in value)
    return False


def context_problem(context: Mapping[str, Any], size: int) -> str | None:
    """Returns why an evaluation context is refused, or None when it is within the bounds.

    Args:
        context: The context, as JSON.
        size: Its encoded size in bytes.
    """
    if size > MAX_CONTEXT_BYTES:
        return f"the evaluation context must be at most {MAX_CONTEXT_BYTES} bytes"
    if _too_deep_or_long(context, 1):
        return (
            f"the evaluation context may nest {MAX_CONTEXT_DEPTH} levels and hold {MAX_CONTEXT_ITEMS} "
            "items per array"
        )
    return None
