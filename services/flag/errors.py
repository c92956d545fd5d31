"""Errors of the flag service."""

from __future__ import annotations

from collections.abc import Sequence

from services.kit.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound


def flag_exists(name: str) -> AlreadyExists:
    """Return the error for a flag key that the tenant uses already."""
    return AlreadyExists("FLAG_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def flag_not_found(name: str) -> NotFound:
    """Return the error for a flag that the caller's tenant does not have."""
    return NotFound("FLAG_NOT_FOUND", f"{name} not found", metadata={"name": name})


def invalid_definition(violations: Sequence[FieldViolation]) -> InvalidArgument:
    """Return the error for a flag that is no valid flagd flag definition.

    See https://flagd.dev/reference/flag-definitions/.
    """
    return InvalidArgument(violations, reason="INVALID_FLAG_DEFINITION")
