"""Orchestrall's typed Python SDK: async stubs and dataclass messages generated from the contracts.

The messages and stubs are betterproto2's, generated from ``proto/`` into
``orchestrall.sdk.proto`` (a tree of the proto packages); this package names the ones people
use::

    from orchestrall.sdk import Client, agent

    async with Client("127.0.0.1:8080", api_key=secret) as client:
        created = await client.agents.create_agent(
            agent.CreateAgentRequest(parent="tenants/acme", agent_id="helper", agent=agent.Agent(...))
        )

List calls page (AIP-158): ``paginate(client.agents.list_agents, agent.ListAgentsRequest(parent=...))``
yields every agent, ``pages(...)`` every response.

Failed calls raise :mod:`orchestrall.sdk.errors`' exceptions (``NotFound``,
``InvalidArgument``...), which carry the answer's ``ErrorInfo`` reason and field violations.
"""

import pkgutil

# The generated part of this package (proto/) is in gen/ while developing; installed, both are
# one folder. This makes the hand-written and the generated folder one package either way.
__path__ = pkgutil.extend_path(__path__, __name__)

from . import errors  # noqa: E402
from ._calls import RetryPolicy  # noqa: E402
from ._client import Client, tls_context  # noqa: E402
from ._pages import pages, paginate  # noqa: E402
from .errors import (  # noqa: E402
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    OrchestrallError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .proto.orchestrall.agent import v1 as agent  # noqa: E402
from .proto.orchestrall.auth import v1 as auth  # noqa: E402
from .proto.orchestrall.billing import v1 as billing  # noqa: E402
from .proto.orchestrall.flag import v1 as flag  # noqa: E402
from .proto.orchestrall.workflow import v1 as workflow  # noqa: E402

__all__ = [
    "AlreadyExists",
    "Client",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "OrchestrallError",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "Unauthenticated",
    "Unavailable",
    "agent",
    "auth",
    "billing",
    "errors",
    "flag",
    "pages",
    "paginate",
    "tls_context",
    "workflow",
]
