"""Errors of the workflow service."""

from __future__ import annotations

from services.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    domain_of,
    invalid,
)

DOMAIN = domain_of("workflow")


def workflow_not_found(name: str) -> NotFound:
    """No such workflow in the caller's tenant."""
    return NotFound("WORKFLOW_NOT_FOUND", f"{name} not found", metadata={"name": name})


def workflow_exists(name: str) -> AlreadyExists:
    """A workflow with that ID exists."""
    return AlreadyExists("WORKFLOW_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def run_not_found(name: str) -> NotFound:
    """No such workflow run in the caller's tenant."""
    return NotFound("WORKFLOW_RUN_NOT_FOUND", f"{name} not found", metadata={"name": name})


def trigger_not_found(name: str) -> NotFound:
    """No such webhook trigger in the caller's tenant."""
    return NotFound("TRIGGER_NOT_FOUND", f"{name} not found", metadata={"name": name})


def trigger_exists(name: str) -> AlreadyExists:
    """A trigger with that ID exists on the workflow."""
    return AlreadyExists("TRIGGER_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def invalid_signature() -> Unauthenticated:
    """A webhook delivery is not signed by its trigger's secret (Standard Webhooks 1.0).

    The same answer for a missing header, a signature that does not match and a
    trigger that does not exist, so a caller learns nothing of which triggers exist.
    """
    return Unauthenticated(
        "INVALID_SIGNATURE",
        "the delivery is not signed for this trigger (Standard Webhooks: webhook-id, "
        "webhook-timestamp, webhook-signature)",
    )


def timestamp_out_of_range(tolerance_seconds: int) -> InvalidArgument:
    """A webhook delivery's ``webhook-timestamp`` is too far from now (a replay, or a wrong clock)."""
    return invalid(
        "webhook-timestamp",
        f"must be within {tolerance_seconds} seconds of now",
        reason="TIMESTAMP_OUT_OF_RANGE",
    )


def schedule_not_found(name: str) -> NotFound:
    """No such schedule in the caller's tenant."""
    return NotFound("SCHEDULE_NOT_FOUND", f"{name} not found", metadata={"name": name})


def schedule_exists(name: str) -> AlreadyExists:
    """A schedule with that ID exists on the workflow."""
    return AlreadyExists("SCHEDULE_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def run_ended(name: str) -> FailedPrecondition:
    """A signal for a run that has ended."""
    return FailedPrecondition("RUN_ENDED", f"{name} has ended; it takes no signals", metadata={"name": name})
