"""flagd's published JSON Schema of flag-definition documents, and validation against it.

The schema (``flags.json``, which refers to ``targeting.json``) is kept in
``services/flag/schema/`` as flagd publishes it (see the README there) and
loaded once, at import; nothing is fetched. :func:`document_problems` checks a
whole document (flagd's ``flagdConfig``: flags as an object or as an array of
flags with a ``key``), :func:`targeting_problems` one targeting rule. Problems
are reported as JSON Pointers (RFC 6901) into the checked value with
jsonschema's message, the deepest cause of each failing part.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from services.kit.jsonpatch import pointer_token

_FOLDER = Path(__file__).with_name("schema")
FLAGS_ID = "https://flagd.dev/schema/v0/flags.json"
TARGETING_ID = "https://flagd.dev/schema/v0/targeting.json"
#: The most problems one check reports.
MAX_PROBLEMS = 50
#: The most characters of one problem's message.
MAX_MESSAGE = 300


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((_FOLDER / name).read_text(encoding="utf-8"))
    return loaded


_FLAGS = _load("flags.json")
_TARGETING = _load("targeting.json")
_REGISTRY: Registry[Any] = Registry().with_resources(
    [(FLAGS_ID, Resource.from_contents(_FLAGS)), (TARGETING_ID, Resource.from_contents(_TARGETING))]
)
_DOCUMENT = Draft7Validator({"$ref": f"{FLAGS_ID}#/definitions/flagdConfig"}, registry=_REGISTRY)
_RULE = Draft7Validator(_TARGETING, registry=_REGISTRY)


@dataclass(frozen=True)
class Problem:
    """Where a value breaks the schema and why.

    Attributes:
        pointer: JSON Pointer of the offending part of the value checked (``""``: all of it).
        message: jsonschema's explanation, cut to :data:`MAX_MESSAGE` characters.
    """

    pointer: str
    message: str


def pointer_of(path: Any) -> str:
    """Returns the JSON Pointer of a path of keys and indexes."""
    return "".join(f"/{pointer_token(str(part))}" for part in path)


def _deepest(error: ValidationError) -> ValidationError:
    """The most specific cause of an error.

    Down each ``anyOf``/``oneOf``: the branch with the fewest errors (the one the value came
    closest to), of those the one whose errors reach deepest into the value, then its deepest error.
    """
    while error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for cause in error.context:
            branches.setdefault(cause.relative_schema_path[0], []).append(cause)
        closest = min(
            branches.values(),
            key=lambda causes: (
                len(causes),
                -max(len(cause.absolute_path) for cause in causes),
                not any(cause.context for cause in causes),
            ),
        )
        error = max(closest, key=lambda cause: (len(cause.absolute_path), bool(cause.context)))
    return error


def _problems(errors: Iterator[ValidationError]) -> list[Problem]:
    found = []
    for error in errors:
        specific = _deepest(error)
        message = specific.message
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        found.append(Problem(pointer_of(specific.absolute_path), message))
        if len(found) == MAX_PROBLEMS:
            break
    return sorted(found, key=lambda problem: problem.pointer)


def document_problems(document: Any) -> list[Problem]:
    """Returns where a flagd flag-definition document breaks flagd's schema; empty when it does not."""
    return _problems(_DOCUMENT.iter_errors(document))


def targeting_problems(rule: Any) -> list[Problem]:
    """Returns where a targeting rule breaks flagd's ``targeting.json``; empty when it does not."""
    return _problems(_RULE.iter_errors(rule))


def references(value: Any, at: str = "") -> list[str]:
    """Returns the JSON Pointers of the evaluator references (``{"$ref": "name"}``) in a JSON value."""
    if isinstance(value, dict):
        if len(value) == 1 and "$ref" in value:
            return [at]
        return [
            found for key, item in value.items() for found in references(item, f"{at}/{pointer_token(key)}")
        ]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in references(item, f"{at}/{index}")]
    return []
