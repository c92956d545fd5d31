"""Errors of the agent service."""

from __future__ import annotations

import grpc

from services.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    TooBusy,
    Unavailable,
    domain_of,
)

DOMAIN = domain_of("agent")


def agent_not_found(name: str) -> NotFound:
    """No such agent in the caller's tenant."""
    return NotFound("AGENT_NOT_FOUND", f"{name} not found", metadata={"name": name})


def agent_exists(name: str) -> AlreadyExists:
    """An agent with that ID exists."""
    return AlreadyExists("AGENT_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def revision_not_found(name: str) -> NotFound:
    """No such revision of the agent in the caller's tenant."""
    return NotFound("AGENT_REVISION_NOT_FOUND", f"{name} not found", metadata={"name": name})


def run_not_found(name: str) -> NotFound:
    """No such run in the caller's tenant."""
    return NotFound("RUN_NOT_FOUND", f"{name} not found", metadata={"name": name})


def thread_not_found(name: str) -> NotFound:
    """No such thread in the caller's tenant."""
    return NotFound("THREAD_NOT_FOUND", f"{name} not found", metadata={"name": name})


def thread_exists(name: str) -> AlreadyExists:
    """A thread with that ID exists."""
    return AlreadyExists("THREAD_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def agent_template_not_found(name: str) -> NotFound:
    """No agent template of that name (``agentTemplates/{agent_template}``)."""
    return NotFound("AGENT_TEMPLATE_NOT_FOUND", f"{name} not found", metadata={"name": name})


def tool_not_found(name: str) -> NotFound:
    """No built-in tool of that name (``tools/{tool}``)."""
    return NotFound("TOOL_NOT_FOUND", f"{name} not found", metadata={"name": name})


def mcp_server_not_found(name: str) -> NotFound:
    """No such MCP server in the caller's tenant."""
    return NotFound("MCP_SERVER_NOT_FOUND", f"{name} not found", metadata={"name": name})


def mcp_server_exists(name: str) -> AlreadyExists:
    """An MCP server with that ID exists."""
    return AlreadyExists("MCP_SERVER_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


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


def too_many_runs(limit: int) -> TooBusy:
    """The tenant has ``limit`` runs in progress already, the most it may."""
    return TooBusy(
        "TOO_MANY_RUNS",
        f"the tenant has {limit} runs in progress, the most it may at once; retry when one has finished",
        retry_after=1,
        metadata={"limit": str(limit)},
    )


def not_awaiting_approval(name: str, state: str) -> FailedPrecondition:
    """The run is not in ``STATE_REQUIRES_ACTION``."""
    return FailedPrecondition(
        "RUN_NOT_AWAITING_APPROVAL",
        f"{name} is {state}, not waiting for decisions on tool calls",
        metadata={"name": name, "state": state},
    )


def run_in_progress(name: str) -> FailedPrecondition:
    """The run is still running (it cannot be replayed yet)."""
    return FailedPrecondition("RUN_IN_PROGRESS", f"{name} is still running", metadata={"name": name})


def run_not_recorded(name: str) -> FailedPrecondition:
    """The run's events were not recorded (it ran before runs recorded them)."""
    return FailedPrecondition("RUN_NOT_RECORDED", f"{name} has no recorded events", metadata={"name": name})


#: The status code of a failed run's ``error``, by its reason.
RUN_FAILURE_CODES = {
    "MODEL_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "MODEL_EMPTY_RESPONSE": grpc.StatusCode.UNAVAILABLE,
    "RUN_TIMEOUT": grpc.StatusCode.DEADLINE_EXCEEDED,
    "RUN_INTERRUPTED": grpc.StatusCode.ABORTED,
    "RUN_CANCELLED": grpc.StatusCode.CANCELLED,
    "RUN_FAILED": grpc.StatusCode.INTERNAL,
}


def http_tool_not_found(name: str) -> NotFound:
    """No such HTTP tool in the caller's tenant."""
    return NotFound("HTTP_TOOL_NOT_FOUND", f"{name} not found", metadata={"name": name})


def http_tool_exists(name: str) -> AlreadyExists:
    """An HTTP tool with that ID exists."""
    return AlreadyExists("HTTP_TOOL_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def tool_failed(name: str, message: str) -> Unavailable:
    """A tenant's tool was called and failed (its endpoint refused, unreachable, slow or erring)."""
    return Unavailable("TOOL_FAILED", message, metadata={"name": name})


def channel_not_found(name: str) -> NotFound:
    """No such notification channel in the caller's tenant."""
    return NotFound("NOTIFICATION_CHANNEL_NOT_FOUND", f"{name} not found", metadata={"name": name})


def channel_exists(name: str) -> AlreadyExists:
    """A notification channel with that ID exists."""
    return AlreadyExists(
        "NOTIFICATION_CHANNEL_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name}
    )


def delivery_not_found(name: str) -> NotFound:
    """No such notification delivery in the caller's tenant."""
    return NotFound("NOTIFICATION_DELIVERY_NOT_FOUND", f"{name} not found", metadata={"name": name})
