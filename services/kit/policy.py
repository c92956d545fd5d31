"""Which mesh service may call which RPCs on its own identity (no user token).

This table is the single source of service-to-service authorization: the kit
enforces it from the caller's SPIFFE ID on every call, and it is kept as plain
data so the same table can be rendered into Istio ``AuthorizationPolicy``
objects. A service calling an RPC that is not listed here must carry a user's
JWT, like any external caller.

The gateway forwards user tokens, and on its own identity it calls one RPC: the
billing service's rate limit check (Envoy's ``ShouldRateLimit``, which Envoy's
``ratelimit`` filter sends with no token). Every request the gateway forwards also
arrives on the gateway's identity, so that RPC must never be forwarded: it is
internal, and the gateway answers it 404 from clients (``gateway/envoy/render.py``),
as it does every internal RPC.
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
    # Envoy's rate limit filter asking billing for the tenant's plan rate (services/billing/ratelimit.py).
    "gateway": frozenset({"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"}),
    # The operator's identity (`orchestrall rotate-keys`, `orchestrall plans`, `orchestrall
    # invoices` present the CLI certificate): signing keys, the price list, any tenant's
    # subscription and the invoice lifecycle.
    "cli": frozenset(
        {
            "/orchestrall.auth.v1.AuthService/RotateSigningKey",
            "/orchestrall.billing.v1.BillingService/CreatePlan",
            "/orchestrall.billing.v1.BillingService/UpdatePlan",
            "/orchestrall.billing.v1.BillingService/ArchivePlan",
            "/orchestrall.billing.v1.BillingService/GetPlan",
            "/orchestrall.billing.v1.BillingService/ListPlans",
            "/orchestrall.billing.v1.BillingService/GetSubscription",
            "/orchestrall.billing.v1.BillingService/UpdateSubscription",
            "/orchestrall.billing.v1.BillingService/GetInvoice",
            "/orchestrall.billing.v1.BillingService/ListInvoices",
            "/orchestrall.billing.v1.BillingService/FinalizeInvoice",
            "/orchestrall.billing.v1.BillingService/MarkInvoicePaid",
            "/orchestrall.billing.v1.BillingService/VoidInvoice",
        }
    ),
}


def may_call(service: str, method: str) -> bool:
    """Whether ``service`` may call ``method`` (``/pkg.Service/Method``) on its own identity."""
    return method in SERVICE_CALLS.get(service, frozenset())
