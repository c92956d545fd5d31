"""Roles and the permissions they grant.

Every RPC names its permission in the contract
(``option (orchestrall.api.v1.access).permission``); this table says which
roles grant it. Roles are ordered, each granting everything the one below it
grants (as Zitadel's and Keycloak's composite roles do):

* ``viewer``    reads agents, runs, knowledge bases (and searches them), HTTP tools, notification
                channels and deliveries, workflows, flags, meters, usage, plans, the subscription
                and invoices; evaluates flags;
* ``developer`` also creates and changes agents, runs, MCP servers, HTTP tools, notification
  channels, knowledge bases and their documents, workflows (and their runs, schedules and
  triggers) and flags, calls tools and sends notifications;
* ``admin``     also manages users, service accounts, API keys, reads the audit log and
                records usage events of its own (an operator feeding usage from elsewhere) and
                manages the tenant's meters and usage alerts and changes its subscription (plan, cancel);
* ``owner``     everything an admin may, and may grant ``owner``.

A caller may grant (to a key, user or service account) only roles at or
below its own highest role, so nobody can mint a credential stronger than
their own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

ROLE_ORDER: tuple[str, ...] = ("viewer", "developer", "admin", "owner")

_VIEWER = frozenset(
    {
        "auth.tenants.get",
        "agent.agents.get",
        "agent.agents.list",
        "agent.revisions.get",
        "agent.revisions.list",
        "agent.runs.get",
        "agent.runs.list",
        "agent.threads.get",
        "agent.threads.list",
        "agent.messages.list",
        "agent.tools.list",
        "agent.templates.list",
        "agent.templates.get",
        "agent.mcpServers.get",
        "agent.mcpServers.list",
        "agent.knowledgeBases.get",
        "agent.knowledgeBases.list",
        "agent.knowledgeBases.search",
        "agent.documents.get",
        "agent.documents.list",
        "agent.httpTools.get",
        "agent.httpTools.list",
        "agent.notificationChannels.get",
        "agent.notificationChannels.list",
        "agent.notificationDeliveries.get",
        "agent.notificationDeliveries.list",
        "workflow.workflows.get",
        "workflow.workflows.list",
        "workflow.runs.get",
        "workflow.runs.list",
        "workflow.schedules.get",
        "workflow.schedules.list",
        "workflow.triggers.get",
        "workflow.triggers.list",
        "flag.flags.get",
        "flag.flags.list",
        "flag.flags.evaluate",
        "flag.revisions.get",
        "flag.revisions.list",
        "flag.usage.get",
        "billing.usage.get",
        "billing.meters.get",
        "billing.meters.list",
        "billing.usageAlerts.get",
        "billing.usageAlerts.list",
        "billing.plans.get",
        "billing.plans.list",
        "billing.subscription.get",
        "billing.invoices.get",
        "billing.invoices.list",
    }
)
_DEVELOPER = _VIEWER | {
    "agent.agents.create",
    "agent.agents.update",
    "agent.agents.delete",
    "agent.runs.create",
    "agent.runs.cancel",
    "agent.runs.approve",
    "agent.threads.create",
    "agent.threads.delete",
    "agent.mcpServers.create",
    "agent.mcpServers.update",
    "agent.mcpServers.delete",
    "agent.knowledgeBases.create",
    "agent.knowledgeBases.update",
    "agent.knowledgeBases.delete",
    "agent.documents.create",
    "agent.documents.update",
    "agent.documents.delete",
    "agent.httpTools.create",
    "agent.httpTools.update",
    "agent.httpTools.delete",
    "agent.notificationChannels.create",
    "agent.notificationChannels.update",
    "agent.notificationChannels.delete",
    "agent.notificationDeliveries.create",
    "agent.tools.call",
    "workflow.workflows.create",
    "workflow.workflows.update",
    "workflow.runs.create",
    "workflow.runs.cancel",
    "workflow.runs.signal",
    "workflow.schedules.create",
    "workflow.schedules.update",
    "workflow.schedules.delete",
    "workflow.triggers.create",
    "workflow.triggers.delete",
    "flag.flags.create",
    "flag.flags.update",
    "flag.flags.delete",
    "flag.flags.import",
}
_ADMIN = _DEVELOPER | {
    "auth.apiKeys.create",
    "auth.apiKeys.list",
    "auth.apiKeys.delete",
    "auth.users.create",
    "auth.users.list",
    "auth.users.delete",
    "auth.serviceAccounts.create",
    "auth.serviceAccounts.list",
    "auth.serviceAccounts.delete",
    "auth.auditEvents.list",
    "billing.usageEvents.create",
    "billing.meters.create",
    "billing.meters.update",
    "billing.meters.delete",
    "billing.usageAlerts.create",
    "billing.usageAlerts.delete",
    "billing.subscription.update",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "developer": frozenset(_DEVELOPER),
    "admin": frozenset(_ADMIN),
    "owner": frozenset(_ADMIN),
}


@functools.lru_cache(maxsize=256)
def _union(roles: tuple[str, ...]) -> frozenset[str]:
    granted: frozenset[str] = frozenset()
    for role in roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return granted


def permissions_of(roles: Iterable[str]) -> frozenset[str]:
    """Returns the union of the permissions of ``roles``; unknown roles grant nothing.

    Remembered per distinct tuple of roles (the table is constant, so nothing goes stale).
    """
    return _union(tuple(roles))


def rank(roles: Iterable[str]) -> int:
    """Position of the highest known role in :data:`ROLE_ORDER`; -1 for none."""
    return max((ROLE_ORDER.index(r) for r in roles if r in ROLE_ORDER), default=-1)


def may_grant(caller_roles: Iterable[str], wanted: Iterable[str]) -> bool:
    """Whether a caller with ``caller_roles`` may grant every role in ``wanted``."""
    return rank(wanted) <= rank(caller_roles)
