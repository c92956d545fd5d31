"""flagd flag-definition documents: read one to import it, write the tenant's flags as one.

A document is what flagd reads from a file (https://flagd.dev/reference/flag-definitions/):
``{"flags": {...}, "$evaluators": {...}, "metadata": {...}}``, flags as an object
by key or (flagd's daemon form) an array of flags with a ``key``. Reading checks,
in order, and reports every problem found at the first step that finds some:

1. the body: at most :data:`MAX_DOCUMENT_BYTES` of JSON;
2. flagd's published JSON Schema (:mod:`services.flag.schema`);
3. each flag: an Orchestrall flag key, a default variant, a flag set ID
   (``metadata.flagSetId``, its own or the document's), its evaluator references
   (``{"$ref": "name"}`` of ``$evaluators``, resolved recursively, at most
   :data:`~services.flag.limits.MAX_RULE_NODES` nodes once resolved), and the rules
   every flag write checks (:func:`services.flag.evaluator.violations`); at most
   :data:`MAX_FLAGS` flags.

Problems are field violations of the request's ``body``, each description
starting with the JSON Pointer (RFC 6901) of the offending part of the document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.flag import errors, evaluator, limits, schema
from services.flag.definitions import (
    FLAG_ID,
    FLAG_SET_ID,
    FLAG_SET_RULE,
    FlagFields,
    fields_of_row,
    from_definition,
    to_definition,
)
from services.flag.models import FlagRow
from services.kit.errors import FieldViolation
from services.kit.jsonpatch import pointer_token
from services.kit.timestamps import utcnow

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_FLAGS = 1000
#: The most problems one import reports.
MAX_PROBLEMS = 50
FIELD = "body"
_SET_RULE = f"a flag set ID must be a string that {FLAG_SET_RULE.removeprefix('must ')}"
#: Field of a flag's violation -> member of its flagd definition.
_MEMBERS = {
    "flag.state": "state",
    "flag.variants": "variants",
    "flag.default_variant": "defaultVariant",
    "flag.targeting": "targeting",
}


@dataclass(frozen=True)
class Document:
    """A document read for import.

    Attributes:
        flags: Flag key -> the fields of its flag, every flag valid.
        flag_set: The document's flag set (its ``metadata.flagSetId``; empty: the default set), which
            its flags without a ``flagSetId`` of their own belong to.
    """

    flags: dict[str, FlagFields]
    flag_set: str


class _Unresolved(Exception):
    """A reference that names no evaluator, or one that refers back to itself."""


class _TooLarge(Exception):
    """A rule larger than the bounds once its references are resolved."""


def _problem(pointer: str, message: str) -> FieldViolation:
    return FieldViolation(FIELD, f"{pointer or '/'}: {message}")


def _resolve(value: Any, evaluators: dict[str, Any], expanding: tuple[str, ...], nodes: list[int]) -> Any:
    """Returns ``value`` with every ``{"$ref": name}`` replaced by the evaluator ``name``, resolved in turn.

    Raises:
        _Unresolved: A reference names no evaluator, or one being expanded (a cycle).
        _TooLarge: The result has more than ``MAX_RULE_NODES`` nodes.
    """
    nodes[0] += 1
    if nodes[0] > limits.MAX_RULE_NODES:
        raise _TooLarge
    if isinstance(value, dict):
        if len(value) == 1 and "$ref" in value:
            name = value["$ref"]
            if not isinstance(name, str) or name not in evaluators or name in expanding:
                raise _Unresolved(str(name))
            return _resolve(evaluators[name], evaluators, (*expanding, name), nodes)
        return {key: _resolve(item, evaluators, expanding, nodes) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, evaluators, expanding, nodes) for item in value]
    return value


def _flags_of(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Returns ``(pointer, key, definition)`` of each flag of a schema-valid document, in document order."""
    flags = document["flags"]
    if isinstance(flags, dict):
        return [(f"/flags/{pointer_token(key)}", key, definition) for key, definition in flags.items()]
    return [
        (f"/flags/{index}", item["key"], {name: value for name, value in item.items() if name != "key"})
        for index, item in enumerate(flags)
    ]


def _flag(
    tenant_id: str,
    pointer: str,
    key: str,
    definition: dict[str, Any],
    evaluators: dict[str, Any],
    flag_set: str,
) -> tuple[FlagFields | None, list[FieldViolation]]:
    """Returns one flag's fields (in ``flag_set`` unless it names its own), or None and its problems."""
    if not FLAG_ID.match(key):
        return None, [
            _problem(
                pointer,
                f"flag key {key[:100]!r} must be 1-63 of A-Z, a-z, 0-9, '-', '_' and '.', "
                "starting with a letter",
            )
        ]
    if not isinstance(definition.get("defaultVariant"), str):
        return None, [
            _problem(
                f"{pointer}/defaultVariant", "a flag needs a default variant here (flagd lets it be null)"
            )
        ]
    targeting = definition.get("targeting")
    if targeting:
        try:
            targeting = _resolve(targeting, evaluators, (), [0])
        except _Unresolved as unknown:
            return None, [
                _problem(
                    f"{pointer}/targeting",
                    f"refers to {str(unknown)[:100]!r}, which is no evaluator of $evaluators "
                    "(or refers back to itself)",
                )
            ]
        except _TooLarge:
            return None, [
                _problem(
                    f"{pointer}/targeting",
                    f"has more than {limits.MAX_RULE_NODES} nodes once its references are resolved",
                )
            ]
    own_set = (definition.get("metadata") or {}).get("flagSetId")
    if own_set is not None and not (isinstance(own_set, str) and FLAG_SET_ID.match(own_set)):
        return None, [_problem(f"{pointer}/metadata/flagSetId", _SET_RULE)]
    fields = from_definition({**definition, "targeting": targeting}, flag_set)
    now = utcnow()
    row = FlagRow(tenant_id=tenant_id, key=key, **fields, create_time=now, update_time=now)
    found = [
        _problem(f"{pointer}/{_MEMBERS.get(violation.field, '')}".rstrip("/"), violation.description)
        for violation in evaluator.violations(row)
    ]
    return (None if found else fields), found


def read(tenant_id: str, data: bytes) -> Document:
    """Reads a flagd flag-definition document for import.

    Args:
        tenant_id: The importing tenant (the context targeting is checked with).
        data: The document, JSON (UTF-8).

    Returns:
        The document's flags and flag set.

    Raises:
        InvalidArgument: ``INVALID_FLAG_DEFINITION`` with field violations of ``body`` (see the module).
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise errors.invalid_definition(
            [_problem("", f"the document must be at most {MAX_DOCUMENT_BYTES} bytes")]
        )
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise errors.invalid_definition([_problem("", f"is not JSON: {str(error)[:200]}")]) from None
    problems = schema.document_problems(document)
    if problems:
        raise errors.invalid_definition(
            [_problem(problem.pointer, f"breaks flagd's schema: {problem.message}") for problem in problems]
        )
    flags = _flags_of(document)
    if len(flags) > MAX_FLAGS:
        raise errors.invalid_definition(
            [_problem("/flags", f"a document may define at most {MAX_FLAGS} flags")]
        )
    evaluators: dict[str, Any] = document.get("$evaluators") or {}
    flag_set = (document.get("metadata") or {}).get("flagSetId", "")
    if flag_set != "" and not (isinstance(flag_set, str) and FLAG_SET_ID.match(flag_set)):
        raise errors.invalid_definition([_problem("/metadata/flagSetId", _SET_RULE)])
    found: list[FieldViolation] = []
    read_flags: dict[str, FlagFields] = {}
    for pointer, key, definition in flags:
        if key in read_flags:
            found.append(_problem(pointer, f"defines flag {key!r} a second time"))
            continue
        fields, violations = _flag(tenant_id, pointer, key, definition, evaluators, flag_set)
        found += violations
        if fields is not None:
            read_flags[key] = fields
        if len(found) >= MAX_PROBLEMS:
            break
    if found:
        raise errors.invalid_definition(found[:MAX_PROBLEMS])
    return Document(read_flags, flag_set)


def write(flags: list[FlagRow], flag_set: str | None = None) -> bytes:
    """Returns flags as a flagd flag-definition document (JSON, UTF-8), flags in key order.

    Args:
        flags: The tenant's flags.
        flag_set: Only this flag set's, named as the document's ``metadata.flagSetId``; None: every flag.
    """
    chosen = sorted((f for f in flags if flag_set is None or f.flag_set == flag_set), key=lambda f: f.key)
    document: dict[str, Any] = {
        "$schema": schema.FLAGS_ID,
        "flags": {flag.key: to_definition(fields_of_row(flag)) for flag in chosen},
    }
    if flag_set:
        document["metadata"] = {"flagSetId": flag_set}
    return json.dumps(document, indent=2, ensure_ascii=False).encode()
