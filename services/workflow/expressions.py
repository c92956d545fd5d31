"""CEL expressions of workflow steps (conditions, map items, wait times), with cel-python.

CEL (cel-spec, github.com/google/cel-spec) is the field's language for such
decisions (Kubernetes admission, Envoy RBAC, Istio). cel-python evaluates it
without a type checker, so :func:`check` checks types by evaluating the
expression once over *witness* values: a value of each variable's static type
(``input`` a string, a condition's output a bool, ...). Variables without a
static type (``input_json``, a tool's JSON result, a map's item) are ``dyn`` in
CEL's terms: an expression that reads them is checked for syntax and
references only, and its type errors surface when the run evaluates it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import celpy
from celpy import celtypes

#: The static type of each step kind's output, as a witness value; None means dyn.
OUTPUT_WITNESS: dict[str, Any] = {
    "agent_run": "",
    "tool_call": None,
    "condition": True,
    "map": None,
    "wait": "",
    "approval": {"approved": True, "comment": "", "decided_by": ""},
    "notification": "",
    "sub_workflow": "",
}
_DYN_NAMES = re.compile(r"\b(input_json|item)\b")
_ENV = celpy.Environment()
_KIND_NAMES = {bool: "bool", list: "list", dt.datetime: "timestamp"}


class ExpressionProblem(Exception):
    """An expression does not parse, has a type error, or failed when evaluated."""


def _short(message: object) -> str:
    """cel-python's message without the activation it dumps, at most 300 characters."""
    return str(message).split(" (in activation", 1)[0][:300]


def _program(expression: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(expression))
    except celpy.CELParseError as error:
        raise ExpressionProblem(f"does not parse: {str(error).splitlines()[0]}") from None


def _to_python(value: Any) -> Any:
    """A CEL value as JSON-able Python (timestamps as datetimes)."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.TimestampType):
        return dt.datetime.fromtimestamp(value.timestamp(), dt.UTC)
    if isinstance(value, celtypes.ListType):
        return [_to_python(item) for item in value]
    if isinstance(value, celtypes.MapType):
        return {str(key): _to_python(item) for key, item in value.items()}
    if value is None or isinstance(value, celtypes.NullType):
        return None
    return str(value)


def _is(value: Any, want: type) -> bool:
    """Whether a result has the wanted type (a bool is no other type, though Python's is an int)."""
    return isinstance(value, want) and (want is bool or not isinstance(value, bool))


def evaluate(expression: str, variables: Mapping[str, Any], want: type) -> Any:
    """Evaluates an expression over JSON-able variables.

    Args:
        expression: CEL text.
        variables: ``input``, ``input_json``, ``steps`` (``{id: {"output": ...}}``),
            and ``item``/``index`` in a map.
        want: The Python type the result must have: ``bool``, ``list`` or
            ``datetime.datetime``.

    Returns:
        The result as Python (a bool, a JSON-able list, or an aware datetime).

    Raises:
        ExpressionProblem: It does not parse, failed (no such key, no matching
            overload), or yields another type.
    """
    activation = {name: celpy.json_to_cel(value) for name, value in variables.items()}
    try:
        result = _program(expression).evaluate(activation)
    except celpy.CELEvalError as error:
        raise ExpressionProblem(f"failed: {_short(error.args[0])}") from None
    value = _to_python(result)
    if not _is(value, want):
        raise ExpressionProblem(f"yields {type(value).__name__}, not a {_KIND_NAMES[want]}")
    return value


def check(expression: str, step_outputs: Mapping[str, str], want: type, dynamic: bool = False) -> None:
    """Checks an expression at write time: syntax, variables and, where they have static types, its type.

    Args:
        expression: CEL text.
        step_outputs: The kind of each step the expression may read, by step ID.
        want: The type its result must have (see :func:`evaluate`).
        dynamic: ``item`` and ``index`` are variables too (a map's task).

    Raises:
        ExpressionProblem: With what is wrong.
    """
    program = _program(expression)
    steps = {step: {"output": OUTPUT_WITNESS[kind]} for step, kind in step_outputs.items()}
    variables: dict[str, Any] = {"input": "", "input_json": None, "steps": steps}
    if dynamic:
        variables |= {"item": None, "index": 0}
    reads_dyn = bool(_DYN_NAMES.search(expression)) or any(
        OUTPUT_WITNESS[kind] is None and re.search(rf"\bsteps\.{step}\b", expression)
        for step, kind in step_outputs.items()
    )
    try:
        result = program.evaluate({name: celpy.json_to_cel(value) for name, value in variables.items()})
    except celpy.CELEvalError as error:
        message = _short(error.args[0])
        if "undeclared" in message or not reads_dyn:
            raise ExpressionProblem(f"type error: {message}") from None
        return
    if reads_dyn:
        return
    value = _to_python(result)
    if not _is(value, want):
        raise ExpressionProblem(f"is of type {type(value).__name__}, not {_KIND_NAMES[want]}")
