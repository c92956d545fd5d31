"""Errors of the billing service."""

from __future__ import annotations

from collections.abc import Sequence

from services.billing.plans import METERS
from services.kit.errors import FieldViolation, InvalidArgument


def unknown_meter_violation(field: str, meter: str) -> FieldViolation:
    """Return the field violation for a meter name that no meter has."""
    return FieldViolation(field, f"unknown meter {meter!r}; known meters: {', '.join(sorted(METERS))}")


def invalid_usage_events(violations: Sequence[FieldViolation]) -> InvalidArgument:
    """Return the error for a batch of usage events with bad events; none of the batch is recorded."""
    return InvalidArgument(violations, reason="INVALID_USAGE_EVENTS")
