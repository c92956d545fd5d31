"""Errors of the billing service."""

from __future__ import annotations

from collections.abc import Sequence

from services.billing.plans import METERS
from services.billing.store import Shortfall
from services.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    QuotaViolation,
)


def unknown_meter_violation(field: str, meter: str) -> FieldViolation:
    """Return the field violation for a meter name that no meter has."""
    return FieldViolation(field, f"unknown meter {meter!r}; known meters: {', '.join(sorted(METERS))}")


def invalid_usage_events(violations: Sequence[FieldViolation]) -> InvalidArgument:
    """Return the error for a batch of usage events with bad events; none of the batch is recorded."""
    return InvalidArgument(violations, reason="INVALID_USAGE_EVENTS")


def unsupported_content_type(content_type: str, served: Sequence[str]) -> InvalidArgument:
    """Return the error for an HTTP body of a media type the CloudEvents ingestion does not read."""
    return InvalidArgument(
        [
            FieldViolation(
                "body.content_type",
                f"{content_type or 'no Content-Type'} is not served; send {' or '.join(served)}"
                " (CloudEvents HTTP binding, structured or batched content mode)",
            )
        ],
        reason="UNSUPPORTED_CONTENT_TYPE",
    )


def quota_exceeded(tenant: str, plan: str, shortfalls: Sequence[Shortfall]) -> QuotaExceeded:
    """Return the error for a reservation that does not fit in the plan's limits; nothing was reserved.

    Args:
        tenant: The tenant's name, ``tenants/{tenant}``.
        plan: The tenant's plan.
        shortfalls: The meters that would exceed their limit, one ``QuotaFailure`` violation each.
    """
    meters = ", ".join(s.meter for s in shortfalls)
    return QuotaExceeded(
        "QUOTA_EXCEEDED",
        f"{tenant} has not enough {meters} left in this billing period",
        [
            QuotaViolation(
                subject=tenant,
                description=(
                    f"{s.meter}: {s.requested:g} asked for, {s.used:g} used and {s.held:g} held"
                    f" of the {s.limit:g} of plan {plan!r}"
                ),
                quota_metric=s.meter,
                quota_id=f"{plan}/{s.meter}",
                quota_value=int(s.limit),
            )
            for s in shortfalls
        ],
        metadata={"tenant": tenant, "meters": meters},
    )


def reservation_not_found(name: str) -> NotFound:
    """Return the error for a reservation the tenant does not have."""
    return NotFound("RESERVATION_NOT_FOUND", f"{name} not found", metadata={"name": name})


def reservation_exists(name: str) -> AlreadyExists:
    """Return the error for a reservation ID that names a reservation of other quantities or subject."""
    return AlreadyExists(
        "RESERVATION_ALREADY_EXISTS",
        f"{name} exists with other quantities or another subject; choose another reservation_id",
        metadata={"name": name},
    )


def reservation_released(name: str) -> FailedPrecondition:
    """Return the error for settling a released reservation (nothing was recorded)."""
    return FailedPrecondition(
        "RESERVATION_RELEASED",
        f"{name} was released, so it records no usage; meter the usage with IngestUsageEvents",
        metadata={"name": name},
    )


def reservation_settled(name: str) -> FailedPrecondition:
    """Return the error for releasing a settled reservation (its usage stays recorded)."""
    return FailedPrecondition(
        "RESERVATION_SETTLED", f"{name} was settled; its usage is recorded", metadata={"name": name}
    )


def invalid_meter(violations: Sequence[FieldViolation]) -> InvalidArgument:
    """Return the error for a meter definition that breaks the rules of :mod:`services.billing.meters`."""
    return InvalidArgument(violations, reason="INVALID_METER")


def meter_not_found(name: str) -> NotFound:
    """Return the error for a meter the tenant does not have (neither its own nor built in)."""
    return NotFound("METER_NOT_FOUND", f"{name} not found", metadata={"name": name})


def meter_exists(name: str) -> AlreadyExists:
    """Return the error for a meter ID the tenant has a meter of."""
    return AlreadyExists(
        "METER_ALREADY_EXISTS", f"{name} exists; choose another meter_id", metadata={"name": name}
    )


def built_in_meter(name: str) -> FailedPrecondition:
    """Return the error for changing or deleting a built-in meter."""
    return FailedPrecondition(
        "BUILT_IN_METER", f"{name} is built in; it cannot be changed or deleted", metadata={"name": name}
    )


def query_too_large(limit: int) -> InvalidArgument:
    """Return the error for a usage query whose windows and groups are more than ``limit``."""
    return InvalidArgument(
        [
            FieldViolation(
                "group_by",
                f"the query has more than {limit} windows and groups; ask for a shorter range,"
                " larger windows or fewer group-by keys",
            )
        ],
        reason="QUERY_TOO_LARGE",
    )


def usage_alert_not_found(name: str) -> NotFound:
    """Return the error for a usage alert the tenant does not have."""
    return NotFound("USAGE_ALERT_NOT_FOUND", f"{name} not found", metadata={"name": name})


def usage_alert_exists(name: str) -> AlreadyExists:
    """Return the error for a usage alert ID the tenant has an alert of."""
    return AlreadyExists(
        "USAGE_ALERT_ALREADY_EXISTS", f"{name} exists; choose another usage_alert_id", metadata={"name": name}
    )


def invalid_plan(violations: Sequence[FieldViolation]) -> InvalidArgument:
    """Return the error for a plan that breaks a rule of :mod:`services.billing.pricing` or of currencies."""
    return InvalidArgument(violations, reason="INVALID_PLAN")


def plan_not_found(name: str) -> NotFound:
    """Return the error for a plan the price list does not have."""
    return NotFound("PLAN_NOT_FOUND", f"{name} not found", metadata={"name": name})


def plan_exists(name: str) -> AlreadyExists:
    """Return the error for a plan ID the price list has a plan of."""
    return AlreadyExists(
        "PLAN_ALREADY_EXISTS", f"{name} exists; choose another plan_id", metadata={"name": name}
    )


def plan_archived(name: str) -> FailedPrecondition:
    """Return the error for subscribing to an archived plan."""
    return FailedPrecondition(
        "PLAN_ARCHIVED", f"{name} is archived; choose an active plan (ListPlans)", metadata={"name": name}
    )


def default_plan(name: str) -> FailedPrecondition:
    """Return the error for archiving the default plan."""
    return FailedPrecondition(
        "DEFAULT_PLAN",
        f"{name} is the default plan; make another plan the default before archiving it",
        metadata={"name": name},
    )


def currency_mismatch(name: str, current: str, wanted: str) -> FailedPrecondition:
    """Return the error for a plan change to a plan of another currency (one invoice has one currency)."""
    return FailedPrecondition(
        "CURRENCY_MISMATCH",
        f"{name} is priced in {wanted}, the current plan in {current}; a plan change keeps the currency",
        metadata={"name": name, "currency_code": wanted},
    )


def operator_only_field(fields: Sequence[str]) -> PermissionDenied:
    """Return the error for a tenant caller setting subscription fields only the operator sets."""
    return PermissionDenied(
        "OPERATOR_ONLY_FIELD",
        f"only the operator sets {', '.join(fields)}",
        metadata={"fields": ",".join(fields)},
    )


def invoice_not_found(name: str) -> NotFound:
    """Return the error for an invoice the tenant does not have."""
    return NotFound("INVOICE_NOT_FOUND", f"{name} not found", metadata={"name": name})


def invoice_not_open(name: str, state: str) -> FailedPrecondition:
    """Return the error for paying or voiding an invoice that is not finalized and unpaid."""
    return FailedPrecondition(
        "INVOICE_NOT_OPEN",
        f"{name} is {state.lower()}; only a finalized, unpaid invoice is paid or voided",
        metadata={"name": name, "state": state},
    )
