"""Resource names and IDs (AIP-122).

Names are ``collection/id`` pairs, e.g. ``tenants/acme/agents/planner``. IDs
follow RFC 1123 labels: lowercase letters, digits and hyphens, starting with a
letter, at most 63 characters.
"""

from __future__ import annotations

import re
import uuid

from services.kit.errors import invalid

_ID = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$")


def validate_id(value: str, field: str, *, minimum: int = 1) -> str:
    """Checks a user-chosen resource ID.

    Raises:
        InvalidArgument: Not an RFC 1123 label of at least ``minimum`` characters.
    """
    if len(value) < minimum or not _ID.match(value):
        raise invalid(
            field,
            f"must be {minimum}-63 lowercase letters, digits or hyphens, start with a letter "
            "and not end with a hyphen (AIP-122)",
        )
    return value


def new_id() -> str:
    """A system-generated ID (UUID4, as AIP-122 allows)."""
    return str(uuid.uuid4())


def parse(name: str, field: str, *collections: str) -> list[str]:
    """Splits a resource name into its IDs, checking the collections.

    Example: ``parse("tenants/a/agents/b", "name", "tenants", "agents")`` returns ``["a", "b"]``.

    Raises:
        InvalidArgument: ``name`` does not have exactly that shape.
    """
    parts = name.split("/")
    pattern = "/".join(f"{c}/{{{c[:-1]}}}" for c in collections)
    if len(parts) != 2 * len(collections) or any(
        parts[2 * i] != c or not parts[2 * i + 1] for i, c in enumerate(collections)
    ):
        raise invalid(field, f"must be a resource name of the form {pattern}")
    return parts[1::2]
