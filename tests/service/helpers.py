"""Helpers for service tests: tenants with tokens, error details."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from openfeature.event import EventDetails, ProviderEvent

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.auth.v1 import auth_service_pb2 as auth_pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as auth_grpc
from orchestrall.auth.v1 import resources_pb2 as auth_res
from orchestrall.workflow.v1 import resources_pb2 as workflow_res
from orchestrall.workflow.v1 import workflow_service_pb2 as workflow_pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as workflow_grpc
from services.agent.flags import AgentFlags, flag_key
from services.agent.routing import Sleep
from services.agent.server import AgentSettings, build
from services.agent.tools import CATALOG, Tool
from services.kit import mtls
from services.kit.server import RunningServer, start
from services.kit.timestamps import utcnow
from tests.conftest import Mesh


@dataclass(frozen=True)
class Tenant:
    """A signed-up tenant and an admin token."""

    id: str
    secret: str
    token: str

    @property
    def name(self) -> str:
        return f"tenants/{self.id}"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


async def new_tenant(mesh: Mesh, prefix: str = "t", industry: str = "") -> Tenant:
    """Signs up a tenant (of ``industry``, if given) with a random ID and gets a token for its admin key."""
    tenant_id = f"{prefix}-{secrets.token_hex(4)}"
    async with mesh.channel("auth") as channel:
        stub = auth_grpc.AuthServiceStub(channel)
        created = await stub.CreateTenant(
            auth_pb.CreateTenantRequest(
                tenant_id=tenant_id, tenant=auth_res.Tenant(display_name="Test Co", industry=industry)
            )
        )
        token = await stub.IssueToken(
            auth_pb.IssueTokenRequest(grant_type="client_credentials", client_secret=created.api_key_secret)
        )
    return Tenant(tenant_id, created.api_key_secret, token.access_token)


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo in an error's ``grpc-status-details-bin``."""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw, f"no status details on {error.code()}: {error.details()}"
    status = status_pb2.Status.FromString(raw)
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    return info


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named in an error's BadRequest detail."""
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Unpack(bad):
            return [v.field for v in bad.field_violations]
    return []


def retry_info(error: grpc.aio.AioRpcError) -> error_details_pb2.RetryInfo | None:
    """The RetryInfo in an error's ``grpc-status-details-bin``, or None."""
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    for detail in status.details:
        if detail.Unpack(info):
            return info
    return None


@contextmanager
def extra_tool(tool: Tool) -> Iterator[Tool]:
    """Adds ``tool`` to the catalog (services run in this process) while the block runs."""
    assert tool.name not in CATALOG
    CATALOG[tool.name] = tool
    try:
        yield tool
    finally:
        del CATALOG[tool.name]


def hub_tool(tool_id: str, function: Callable[[dict[str, Any]], Any]) -> Tool:
    """A test tool of one argument, ``hub``, which a grammar-constrained model can only call right."""
    schema = {
        "type": "object",
        "properties": {"hub": {"type": "string", "enum": ["Rotterdam"]}},
        "required": ["hub"],
    }
    return Tool(id=tool_id, description="Looks up a logistics hub.", parameters=schema, function=function)


async def run_to_end(
    stub: agent_grpc.AgentServiceStub, request: agent_pb.CreateRunRequest, metadata: Any
) -> agent_res.Run:
    """Starts a run (``CreateRun`` returns at once) and returns it once it has stopped (``WaitRun``)."""
    run = await stub.CreateRun(request, metadata=metadata)
    return await stub.WaitRun(agent_pb.WaitRunRequest(name=run.name), metadata=metadata)


async def agent_replica(
    mesh: Mesh,
    model_url: str,
    clock: Callable[[], dt.datetime] = utcnow,
    backoff_sleep: Sleep = asyncio.sleep,
    **settings: Any,
) -> RunningServer:
    """Starts another agent replica beside the mesh's, on the same database, on its own port.

    Args:
        mesh: The mesh whose settings it takes.
        model_url: The model server.
        clock: The time its run leases are measured in.
        backoff_sleep: Waits the backoffs between attempts of its model calls.
        settings: ``AgentSettings`` fields to change.
    """
    base = mesh.config.settings("agent").model_copy(
        update={
            "tls_dir": mesh.tls_dir,
            "listen": "127.0.0.1:0",
            "metrics_listen": None,
            "audit_relay_interval_seconds": 0.2,
        }
    )
    agent_settings = AgentSettings(**{**base.model_dump(), "openai_base_url": model_url, **settings})
    return await start(*(await build(agent_settings, clock=clock, backoff_sleep=backoff_sleep)))


def agent_channel(mesh: Mesh, server: RunningServer) -> grpc.aio.Channel:
    """A channel to an agent replica, with the gateway's certificate (as Envoy calls it)."""
    return grpc.aio.secure_channel(
        f"127.0.0.1:{server.port}",
        mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "gateway")),
        options=[("grpc.ssl_target_name_override", "agent")],
    )


async def one_step_workflow(mesh: Mesh, tenant: Tenant, workflow_id: str) -> str:
    """Creates the agent ``clerk`` (four tokens) and a workflow of one step running it; returns its name."""
    async with mesh.channel("agent") as channel:
        await agent_grpc.AgentServiceStub(channel).CreateAgent(
            agent_pb.CreateAgentRequest(
                parent=tenant.name,
                agent_id="clerk",
                agent=agent_res.Agent(instructions="Answer in one word.", max_output_tokens=4, temperature=0),
            ),
            metadata=tenant.metadata,
        )
    step = workflow_res.Workflow.Step(
        id="a", agent_run=workflow_res.Workflow.AgentRun(agent=f"{tenant.name}/agents/clerk")
    )
    async with mesh.channel("workflow") as channel:
        workflow = await workflow_grpc.WorkflowServiceStub(channel).CreateWorkflow(
            workflow_pb.CreateWorkflowRequest(
                parent=tenant.name, workflow_id=workflow_id, workflow=workflow_res.Workflow(steps=[step])
            ),
            metadata=tenant.metadata,
        )
    return workflow.name


def agent_flags(server: RunningServer) -> AgentFlags:
    """Returns the flags of an agent server (its provider starts as one of the server's start hooks)."""
    for hook in server.service.on_start:
        owner = getattr(hook, "__self__", None)
        if isinstance(owner, AgentFlags):
            return owner
    raise AssertionError("the agent server reads no flags")


@asynccontextmanager
async def flag_synced(
    server: RunningServer, tenant: Tenant, flag: str, timeout: float = 5.0
) -> AsyncIterator[None]:
    """Waits, as the block ends, until the agent server's provider installed a change of the tenant's flag.

    The provider says so with OpenFeature's ``PROVIDER_CONFIGURATION_CHANGED`` event naming the flag's key.
    """
    client = agent_flags(server).client
    key = flag_key(tenant.id, flag)
    installed = threading.Event()

    def on_change(details: EventDetails) -> None:
        if key in (details.flags_changed or ()):
            installed.set()

    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        yield
        assert await asyncio.to_thread(installed.wait, timeout), (
            f"the agent did not sync {key} in {timeout} s"
        )
    finally:
        client.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
