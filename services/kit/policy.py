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
            # Every tenant's flags in one stream, for its in-process flagd provider (services/agent/flags.py).
            "/flagd.sync.v1.FlagSyncService/SyncFlags",
        }
    ),
    "workflow": frozenset(
        {
            _JWKS,
            _AUDIT,
            "/orchestrall.agent.v1.AgentService/GetAgent",
            "/orchestrall.agent.v1.AgentService/ListTools",
            "/orchestrall.agent.v1.AgentService/CallTool",
            "/orchestrall.agent.v1.AgentService/CreateRun",
            "/orchestrall.agent.v1.AgentService/WaitRun",
            "/orchestrall.agent.v1.AgentService/CancelRun",
        }
    ),
    "flag": frozenset({_JWKS, _AUDIT}),
    "billing": frozenset({_JWKS, _AUDIT}),
    "auth": frozenset(),
    # The operator's identity (`orchestrall rotate-keys` presents the CLI certificate).
    "cli": frozenset({"/orchestrall.auth.v1.AuthService/RotateSigningKey"}),
}


def may_call(service: str, method: str) -> bool:
    """Whether ``service`` may call ``method`` (``/pkg.Service/Method``) on its own identity."""
    return method in SERVICE_CALLS.get(service, frozenset())
