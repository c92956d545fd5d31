"""The services as typed async stubs: betterproto2's generated methods on :class:`~._calls.Resilient`.

Each class adds nothing to its generated stub but the policy of the client's session
(credentials, deadlines, retries, typed errors), so its methods, request and response types
are exactly the contract's: ``await client.agents.get_agent(agent.GetAgentRequest(name=...))``.
"""

from __future__ import annotations

from ._calls import Resilient
from .proto.orchestrall.agent.v1 import AgentServiceStub
from .proto.orchestrall.auth.v1 import AuthServiceStub
from .proto.orchestrall.billing.v1 import BillingServiceStub
from .proto.orchestrall.flag.v1 import FlagServiceStub
from .proto.orchestrall.workflow.v1 import WorkflowServiceStub


class AgentService(Resilient, AgentServiceStub):
    """``orchestrall.agent.v1.AgentService``: agents, runs, threads, tools, knowledge bases."""


class AuthService(Resilient, AuthServiceStub):
    """``orchestrall.auth.v1.AuthService``: tenants, users, API keys, tokens, audit log."""


class BillingService(Resilient, BillingServiceStub):
    """``orchestrall.billing.v1.BillingService``: usage, meters, plans, subscriptions, invoices."""


class FlagService(Resilient, FlagServiceStub):
    """``orchestrall.flag.v1.FlagService``: feature flags, their revisions and evaluation."""


class WorkflowService(Resilient, WorkflowServiceStub):
    """``orchestrall.workflow.v1.WorkflowService``: workflows, runs, schedules, triggers."""
