"""Errors of the agent service."""

from __future__ import annotations

from services.kit.errors import AlreadyExists, NotFound, ResourceExhausted, Unavailable, domain_of

DOMAIN = domain_of("agent")


def agent_not_found(name: str) -> NotFound:
    """No such agent in the caller's tenant."""
    return NotFound("AGENT_NOT_FOUND", f"{name} not found", metadata={"name": name})


def agent_exists(name: str) -> AlreadyExists:
    """An agent with that ID exists."""
    return AlreadyExists("AGENT_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def run_not_found(name: str) -> NotFound:
    """No such run in the caller's tenant."""
    return NotFound("RUN_NOT_FOUND", f"{name} not found", metadata={"name": name})


def quota_exceeded(tenant: str, meter: str, limit: float) -> ResourceExhausted:
    """The tenant's plan does not allow another run this period."""
    return ResourceExhausted(
        "QUOTA_EXCEEDED",
        f"{tenant} has used its {meter} allowance for this billing period",
        metadata={"meter": meter, "limit": f"{limit:g}"},
    )


def billing_unavailable() -> Unavailable:
    """Entitlements could not be checked; runs fail closed."""
    return Unavailable("BILLING_UNAVAILABLE", "the billing service could not be reached; retry later")
