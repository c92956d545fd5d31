"""Errors of the workflow service."""

from __future__ import annotations

from services.kit.errors import AlreadyExists, FailedPrecondition, NotFound, domain_of

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


def run_ended(name: str) -> FailedPrecondition:
    """A signal for a run that has ended."""
    return FailedPrecondition("RUN_ENDED", f"{name} has ended; it takes no signals", metadata={"name": name})
