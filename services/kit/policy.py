"""Which mesh service may call which RPCs on its own identity (no user token).

This table is the single source of service-to-service authorization: the kit
enforces it from the caller's SPIFFE ID on every call, and it is kept as plain
data so the same table can be rendered into Istio ``AuthorizationPolicy``
objects. A service calling an RPC that is not listed here must carry a user's
JWT, like any external caller. The gateway has no entry: it only ever forwards
user tokens.
"""

from __future__ import annotations

_JWKS = "/orchestrall.auth.v1.AuthService/GetJwks"
_AUDIT = "/orchestrall.auth.v1.AuthService/IngestAuditEvents"

SERVICE_CALLS: dict[str, frozenset[str]] = {
    "agent": frozenset(
        {
            _JWKS,
            _AUDIT,
            "/orchestrall.billing.v1.BillingService/CheckEntitlement",
            "/orchestrall.billing.v1.BillingService/CreateReservation",
            "/orchestrall.billing.v1.BillingService/IngestUsageEvents",
            "/orchestrall.billing.v1.BillingService/ReleaseReservation",
            "/orchestrall.billing.v1.BillingService/SettleReservation",
            "/orchestrall.flag.v1.FlagService/EvaluateFlag",
        }
    ),
    "workflow": frozenset(
        {
            _JWKS,
            _AUDIT,
            "/orchestrall.agent.v1.AgentService/GetAgent",
            "/orchestrall.agent.v1.AgentService/ListTools",
            "/orchestrall.agent.v1.AgentService/CallTool",
            "/orchestrall.agent.v1.AgentService/GetHttpTool",
            "/orchestrall.agent.v1.AgentService/SendNotification",
            "/orchestrall.agent.v1.AgentService/CreateRun",
            "/orchestrall.agent.v1.AgentService/WaitRun",
            "/orchestrall.agent.v1.AgentService/CancelRun",
        }
    ),
    "flag": frozenset({_JWKS, _AUDIT}),
    # Usage alerts are sent through the tenant's notification channels.
    "billing": frozenset({_JWKS, _AUDIT, "/orchestrall.agent.v1.AgentService/SendNotification"}),
    "auth": frozenset(),
    # The operator's identity (`orchestrall rotate-keys` presents the CLI certificate).
    "cli": frozenset({"/orchestrall.auth.v1.AuthService/RotateSigningKey"}),
}


def may_call(service: str, method: str) -> bool:
    """Whether ``service`` may call ``method`` (``/pkg.Service/Method``) on its own identity."""
    return method in SERVICE_CALLS.get(service, frozenset())
