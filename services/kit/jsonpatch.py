"""JSON Patch (RFC 6902) differences between two JSON documents.

:func:`diff` returns the operations that turn one document into another:
objects are compared member by member (recursively), anything else (arrays,
strings, numbers, booleans, null) is replaced whole when it differs. Values
are compared by their JSON text, so ``true`` and ``1``, or ``1`` and ``1.0``,
differ. Paths are JSON Pointers (RFC 6901).
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict


class PatchOperation(TypedDict):
    """One JSON Patch operation: ``op`` is ``add``, ``remove`` or ``replace``; no ``value`` for ``remove``."""

    op: str
    path: str
    value: NotRequired[Any]


def pointer_token(key: str) -> str:
    """Returns an object member name escaped as one JSON Pointer reference token (RFC 6901, section 3)."""
    return key.replace("~", "~0").replace("/", "~1")


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def diff(before: Any, after: Any, path: str = "") -> list[PatchOperation]:
    """Returns the JSON Patch that turns ``before`` into ``after``.

    Args:
        before: A JSON value (dicts, lists, str, int, float, bool, None).
        after: Another.
        path: The JSON Pointer both sit at (empty: the documents' roots).

    Returns:
        The operations, removals of an object's members first, then additions and
        replacements, each in member-name order; empty when the two are the same.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        operations: list[PatchOperation] = [
            {"op": "remove", "path": f"{path}/{pointer_token(key)}"}
            for key in sorted(before.keys() - after.keys())
        ]
        for key in sorted(after):
            at = f"{path}/{pointer_token(key)}"
            if key not in before:
                operations.append({"op": "add", "path": at, "value": after[key]})
            else:
                operations += diff(before[key], after[key], at)
        return operations
    if _same(before, after):
        return []
    return [{"op": "replace", "path": path, "value": after}]
