"""AgentService: protos in, domain calls, protos out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence, Set
from typing import Any

import grpc
from google.protobuf import empty_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import errors, http_tool_store, http_tools, mcp, store, threads
from services.agent import tools as catalog
from services.agent.catalog import templates as agent_templates
from services.agent.events import RunEvents
from services.agent.execution import Executor, RunLeases, RunLimits, stretch_id
from services.agent.flags import AgentFlags
from services.agent.http_tool_handlers import HttpToolHandlers
from services.agent.knowledge import tool as knowledge_tool
from services.agent.knowledge.service import Knowledge, KnowledgeRpcs
from services.agent.models import (
    MCP_SERVER_FIELDS,
    REVISION_FIELDS,
    AgentRevisionRow,
    AgentRow,
    McpServerRow,
    MessageRow,
    Role,
    RunRow,
    RunState,
    ThreadRow,
)
from services.agent.notifications.handlers import (
    SEND_NOTIFICATION,
    SEND_NOTIFICATION_DESCRIPTION,
    SEND_NOTIFICATION_PARAMETERS,
    NotificationHandlers,
)
from services.agent.notifications.outbox import Notifier
from services.agent.peers import Peers
from services.agent.replay import replay
from services.agent.routing import ROUTE_PREFIX, ModelRouter, route_of
from services.agent.runner import Checkpoint, Decision, RunTool
from services.kit.audit import note_resource
from services.kit.auth import current_principal, require_tenant
from services.kit.db import Database, Tx
from services.kit.egress import EgressPolicy
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument, error_status, invalid
from services.kit.fieldmask import update_paths
from services.kit.jsonvalue import from_struct, to_value
from services.kit.metrics import RunOutcomes
from services.kit.names import TENANT, ResourceName, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.sealing import Sealer
from services.kit.timestamps import to_timestamp, utcnow

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_TOKENS = 256
# How long CancelRun waits for the run's executor to stop it before returning it as it is.
CANCEL_WAIT_SECONDS = 2.0
AGENT = ResourceName.of(res.Agent)
AGENT_REVISION = ResourceName.of(res.AgentRevision)
AGENT_TEMPLATE = ResourceName.of(res.AgentTemplate)
RUN = ResourceName.of(res.Run)
THREAD = ResourceName.of(res.Thread)
MESSAGE = ResourceName.of(res.Message)
RUN_STATES = EnumMap(RunState, res.Run.State, "STATE_")
ROLES = EnumMap(Role, res.Message.Role, "ROLE_")
MCP_SERVER = mcp.MCP_SERVER
# AIP-203: output-only and identifier fields named in an update mask are ignored.
IGNORED_FIELDS = frozenset({"name", "create_time", "revision_id", "revision_create_time"})
MCP_IGNORED_FIELDS = frozenset({"name", "create_time", "update_time", "header_names"})


def new_revision_id() -> str:
    """Returns a new revision ID: 8 random lowercase hexadecimal characters (AIP-162)."""
    return secrets.token_hex(4)


def agent_to_proto(agent: AgentRow) -> res.Agent:
    """Maps an agent row to its resource."""
    message = res.Agent(
        name=AGENT.format(agent.tenant_id, agent.id),
        display_name=agent.display_name,
        model=agent.model,
        instructions=agent.instructions,
        tools=agent.tools,
        max_output_tokens=agent.max_output_tokens,
        tool_choice=res.ToolChoice.Value(agent.tool_choice),
        create_time=to_timestamp(agent.create_time),
        revision_id=agent.revision_id,
        revision_create_time=to_timestamp(agent.revision_create_time),
        approval_required_tools=agent.approval_required_tools,
        template=agent.template,
    )
    if agent.temperature is not None:
        message.temperature = agent.temperature
    return message


def template_to_proto(template: agent_templates.AgentTemplate) -> res.AgentTemplate:
    """Maps an agent template to its resource."""
    return res.AgentTemplate(
        name=template.name,
        display_name=template.display_name,
        industry=template.industry,
        description=template.description,
        instructions=template.instructions,
        tools=template.tools,
        tool_choice=res.ToolChoice.Value(template.tool_choice),
        example_input=template.example_input,
    )


def from_template(agent: res.Agent) -> res.Agent:
    """Returns the agent with the fields it leaves empty taken from its template (``agent.template``).

    The display name, instructions, tools and tool choice come from the template
    where the agent has none; an agent without a template is returned as it is.

    Raises:
        InvalidArgument: ``agent.template`` is not a template's name.
    """
    if not agent.template:
        return agent
    (template_id,) = AGENT_TEMPLATE.parse(agent.template, "agent.template")
    template = _TEMPLATES.get(template_id)
    if template is None:
        raise invalid("agent.template", f"no agent template named {agent.template!r}; see ListAgentTemplates")
    merged = res.Agent()
    merged.CopyFrom(agent)
    merged.display_name = agent.display_name or template.display_name
    merged.instructions = agent.instructions or template.instructions
    if not agent.tools:
        merged.tools.extend(template.tools)
    if agent.tool_choice == res.TOOL_CHOICE_UNSPECIFIED:
        merged.tool_choice = res.ToolChoice.Value(template.tool_choice)
    return merged


def revision_to_proto(revision: AgentRevisionRow) -> res.AgentRevision:
    """Maps a revision row to its resource; ``snapshot`` is the agent as it was then (no ``create_time``)."""
    snapshot = res.Agent(
        name=AGENT.format(revision.tenant_id, revision.agent_id),
        display_name=revision.display_name,
        model=revision.model,
        instructions=revision.instructions,
        tools=revision.tools,
        max_output_tokens=revision.max_output_tokens,
        tool_choice=res.ToolChoice.Value(revision.tool_choice),
        revision_id=revision.id,
        revision_create_time=to_timestamp(revision.create_time),
        approval_required_tools=revision.approval_required_tools,
    )
    if revision.temperature is not None:
        snapshot.temperature = revision.temperature
    return res.AgentRevision(
        name=AGENT_REVISION.format(revision.tenant_id, revision.agent_id, revision.id),
        snapshot=snapshot,
        create_time=to_timestamp(revision.create_time),
    )


def thread_to_proto(thread: ThreadRow) -> res.Thread:
    """Maps a thread row to its resource."""
    return res.Thread(
        name=THREAD.format(thread.tenant_id, thread.id),
        metadata=thread.thread_metadata,
        create_time=to_timestamp(thread.create_time),
        update_time=to_timestamp(thread.update_time),
    )


def message_to_proto(message: MessageRow) -> res.Message:
    """Maps a thread message row to its resource."""
    proto = res.Message(
        name=MESSAGE.format(message.tenant_id, message.thread_id, message.id),
        role=ROLES.to_proto(message.role),
        content=message.content,
        run=message.run,
        create_time=to_timestamp(message.create_time),
    )
    if message.tool_call is not None:
        proto.tool_call.CopyFrom(res.ToolCall(**threads.tool_call_of(message)))
    return proto


def _agent_fields(agent: res.Agent) -> dict[str, Any]:
    """Returns the revision fields of an agent message (:data:`REVISION_FIELDS`), defaults applied."""
    return {
        "display_name": agent.display_name[:200],
        "model": agent.model,
        "instructions": agent.instructions,
        "tools": list(agent.tools),
        "temperature": agent.temperature if agent.HasField("temperature") else None,
        "max_output_tokens": agent.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
        "tool_choice": res.ToolChoice.Name(agent.tool_choice or res.TOOL_CHOICE_AUTO),
        "approval_required_tools": list(agent.approval_required_tools),
    }


def _update_agent(
    tx: Tx, agent_id: str, message: res.Agent, paths: tuple[str, ...], routes: Set[str]
) -> AgentRow | None:
    """Reads the agent locked, applies the named fields, checks the result and revises the agent.

    One transaction: an update that changes nothing writes nothing and makes no revision.

    Returns:
        The agent as it is afterwards; None when there is none.

    Raises:
        InvalidArgument: The updated agent breaks a rule of ``CreateAgent`` (nothing is written).
    """
    agent = store.get_agent(tx, agent_id, lock=True)
    if agent is None:
        return None
    fields = _agent_fields(message)
    changed = {name: fields[name] for name in paths if fields[name] != getattr(agent, name)}
    if not changed:
        return agent
    updated = dataclasses.replace(agent, **changed)
    servers = store.get_mcp_servers(tx, _mcp_server_ids(updated.tools, agent.tenant_id))
    http = http_tool_store.get_http_tools(tx, http_tools.tool_ids(updated.tools, agent.tenant_id))
    _validate_agent(agent_to_proto(updated), "", agent.tenant_id, routes, servers, {t.id for t in http})
    now = utcnow()
    for _ in range(5):  # an 8-character ID taken by an earlier revision of this agent: draw again
        revision = AgentRevisionRow(
            tenant_id=agent.tenant_id,
            agent_id=agent.id,
            id=new_revision_id(),
            **{name: getattr(updated, name) for name in REVISION_FIELDS},
            create_time=now,
        )
        revised = store.revise_agent(tx, agent, revision)
        if revised is not None:
            return revised
    raise RuntimeError(f"no free revision ID for agent {agent.id}")


def run_to_proto(run: RunRow) -> res.Run:
    """Maps a run row to its resource."""
    message = res.Run(
        name=RUN.format(run.tenant_id, run.agent_id, run.id),
        input=run.input,
        output=run.output,
        state=RUN_STATES.to_proto(run.state),
        tool_calls=[res.ToolCall(**call) for call in run.tool_calls],
        usage=res.Usage(
            input_tokens=run.input_tokens, output_tokens=run.output_tokens, model_calls=run.model_calls
        ),
        model=run.model,
        tools_enabled=run.tools_enabled,
        create_time=to_timestamp(run.create_time),
        end_time=to_timestamp(run.end_time),
    )
    if run.agent_revision_id:
        message.agent_revision = AGENT_REVISION.format(run.tenant_id, run.agent_id, run.agent_revision_id)
    if run.thread_id:
        message.thread = THREAD.format(run.tenant_id, run.thread_id)
    message.pending_tool_calls.extend(res.ToolCall(**call) for call in run.pending_tool_calls)
    message.citations.extend(res.Citation(**c) for c in knowledge_tool.citations(run.tool_calls))
    if run.error_reason:
        code = errors.RUN_FAILURE_CODES.get(run.error_reason, grpc.StatusCode.UNKNOWN)
        message.error.CopyFrom(error_status(code, run.error_reason, run.error_message, errors.DOMAIN))
    return message


def _mcp_server_ids(tools: Sequence[str], tenant_id: str) -> list[str]:
    """Returns the IDs of the tenant's MCP servers whose tools ``tools`` name."""
    return [name.split("/")[3] for name in tools if mcp.is_mcp_tool(name) and name.split("/")[1] == tenant_id]


def _tool_violation(
    tool: str, tenant_id: str, servers: Mapping[str, McpServerRow], http_tool_ids: Set[str] = frozenset()
) -> str | None:
    """Returns why an agent of ``tenant_id`` may not name ``tool``, or None when it may."""
    if tool in catalog.CATALOG or tool == SEND_NOTIFICATION:
        return None
    if http_tools.is_http_tool(tool):
        tool_tenant, tool_id = tool.split("/")[1::2]
        if tool_tenant != tenant_id or tool_id not in http_tool_ids:
            return f"{tool} is not an HTTP tool of tenants/{tenant_id}"
        return None
    if knowledge_tool.is_knowledge_tool(tool):
        owner = tool.split("/")[1]
        return None if owner == tenant_id else f"{tool} is not a knowledge base of tenants/{tenant_id}"
    if not mcp.is_mcp_tool(tool):
        return f"unknown tool {tool!r}; see ListTools"
    tool_tenant, server_id, tool_id = tool.split("/")[1::2]
    server_name = MCP_SERVER.format(tool_tenant, server_id)
    server = servers.get(server_id) if tool_tenant == tenant_id else None
    if server is None:
        return f"{server_name} is not a registered MCP server of tenants/{tenant_id}"
    if server.allowed_tools and tool_id not in server.allowed_tools:
        return f"{server_name} does not allow its tool {tool_id!r} (allowed_tools)"
    if not mcp.TOOL_NAME.match(tool_id):
        return f"{tool_id!r} is not an MCP tool name"
    return None


def _validate_agent(
    agent: res.Agent,
    agent_id: str,
    tenant_id: str,
    routes: Set[str],
    servers: Sequence[McpServerRow] = (),
    http_tool_ids: Set[str] = frozenset(),
) -> None:
    """Checks an agent against the rules the contract's bounds cannot state.

    Args:
        agent: The agent as it would be stored.
        agent_id: Its requested ID; empty for none.
        tenant_id: The agent's tenant.
        routes: The model routes it may name (``routes/{route}``), configured by the operator.
        servers: The tenant's MCP servers its MCP tools name (read by the caller); a
            tool of another server, or of another tenant's, is a violation.
        http_tool_ids: The IDs of the tenant's HTTP tools it names that exist.

    Raises:
        InvalidArgument: With a violation per bad field.
    """
    by_id = {server.id: server for server in servers}
    violations = []
    if agent_id:
        try:
            validate_id(agent_id, "agent_id")
        except InvalidArgument as error:
            violations += error.violations
    route = route_of(agent.model)
    if route is not None and route not in routes:
        known = ", ".join(sorted(routes))
        violations.append(FieldViolation("agent.model", f"no model route named {route!r}; routes: {known}"))
    if not agent.instructions.strip():  # its length is the contract's rule, checked by the guard
        violations.append(FieldViolation("agent.instructions", "must not be blank"))
    for i, tool in enumerate(agent.tools):
        problem = _tool_violation(tool, tenant_id, by_id, http_tool_ids)
        if problem is not None:
            violations.append(FieldViolation(f"agent.tools[{i}]", problem))
    if agent.HasField("temperature") and not 0 <= agent.temperature <= 2:
        violations.append(FieldViolation("agent.temperature", "must be between 0 and 2"))
    if not 0 <= agent.max_output_tokens <= 4096:
        violations.append(
            FieldViolation("agent.max_output_tokens", "must be between 1 and 4096, or 0 for 256")
        )
    for i, tool in enumerate(agent.approval_required_tools):
        if tool not in agent.tools:
            violations.append(
                FieldViolation(f"agent.approval_required_tools[{i}]", f"{tool!r} is not one of agent.tools")
            )
    if agent.tool_choice == res.TOOL_CHOICE_REQUIRED and not agent.tools:
        violations.append(FieldViolation("agent.tool_choice", "TOOL_CHOICE_REQUIRED needs at least one tool"))
    if violations:
        raise InvalidArgument(violations)


class AgentService(KnowledgeRpcs, HttpToolHandlers, NotificationHandlers, pb_grpc.AgentServiceServicer):
    """Agents and runs; knowledge bases, HTTP tools and notification channels through their mixins.

    Args:
        db: The agent database.
        router: Opens every model call on the endpoint that answers it; knows the routes.
        default_model: Model ID used when an agent names none (and no ``default`` route is configured).
        peers: Billing calls.
        flags: The tenants' ``agent-tools`` and ``agent-model-route`` flags, evaluated in memory.
        limits: Limits of runs.
        leases: Leases of runs in progress.
        mcp_client: Lists and calls the tools of tenants' MCP servers.
        sealer: Encrypts MCP servers' headers, HTTP tools' auth headers and channels' secrets at rest.
        egress: The outbound rules of HTTP tools and notifications.
        notifier: Sends notifications and relays their retries.
        knowledge: Knowledge bases' embedding model, search and ingestion.
        outcomes: Counts the runs' ends by state (the service's metrics).
    """

    def __init__(
        self,
        db: Database,
        router: ModelRouter,
        default_model: str,
        peers: Peers,
        flags: AgentFlags,
        limits: RunLimits,
        leases: RunLeases,
        mcp_client: mcp.McpClient,
        sealer: Sealer,
        egress: EgressPolicy,
        notifier: Notifier,
        knowledge: Knowledge,
        outcomes: RunOutcomes | None = None,
    ) -> None:
        self._db = db
        self._knowledge = knowledge
        self._mcp = mcp_client
        self._sealer = sealer
        self._egress = egress
        self.notifier = notifier
        self._limits = limits
        self._leases = leases
        self._router = router
        self._default_model = router.default_model(default_model)
        self._peers = peers
        self._flags = flags
        self._events = RunEvents(db, run_to_proto)
        self.executor = Executor(
            db,
            router,
            peers,
            limits,
            leases,
            self._events,
            mcp_tools=self._tenant_tools,
            outcomes=outcomes,
        )

    async def _tenant_tools(self, tenant_id: str, tool_names: Sequence[str]) -> list[RunTool]:
        """Returns the agent's tools bound to its tenant: MCP, HTTP, knowledge and ``send_notification``.

        MCP servers are asked and HTTP tools and knowledge bases read at once; none of them
        raises for a broken tool (it fails its calls instead).
        """
        mcp_tools, http, knowledge = await asyncio.gather(
            mcp.resolve_tools(self._db, self._sealer, self._mcp, tenant_id, tool_names),
            http_tools.resolve_tools(self._db, self._sealer, self._egress, tenant_id, tool_names),
            knowledge_tool.resolve_tools(self._db, self._knowledge.searcher, tenant_id, tool_names),
        )
        tools: list[RunTool] = [*mcp_tools, *http, *knowledge]
        if SEND_NOTIFICATION in tool_names:
            tools.append(await self.send_notification_run_tool(tenant_id))
        return tools

    async def CreateAgent(
        self, request: pb.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> res.Agent:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        wanted = from_template(request.agent)
        servers, http = await asyncio.gather(
            self._db.read(tenant_id, store.get_mcp_servers, _mcp_server_ids(wanted.tools, tenant_id)),
            self._db.read(
                tenant_id, http_tool_store.get_http_tools, http_tools.tool_ids(wanted.tools, tenant_id)
            ),
        )
        http_ids = {tool.id for tool in http}
        _validate_agent(wanted, request.agent_id, tenant_id, self._router.names, servers, http_ids)
        now = utcnow()
        agent = AgentRow(
            tenant_id=tenant_id,
            id=request.agent_id or new_id(),
            **_agent_fields(wanted),
            request_id=request.request_id or None,
            create_time=now,
            revision_id=new_revision_id(),
            revision_create_time=now,
            delete_time=None,
            template=wanted.template,
        )
        name = AGENT.format(tenant_id, agent.id)
        note_resource(name)
        created = await self._db.write(tenant_id, store.create_agent, agent)
        if created is None:
            raise errors.agent_exists(name)
        return agent_to_proto(created)

    async def GetAgent(self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext) -> res.Agent:
        tenant_id, agent_id = AGENT.parse(request.name, "name")
        require_tenant(tenant_id)
        agent = await self._db.read(tenant_id, store.get_agent, agent_id)
        if agent is None:
            raise errors.agent_not_found(request.name)
        return agent_to_proto(agent)

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_agents, page)
        agents, token = listing.messages(agent_to_proto)
        return pb.ListAgentsResponse(agents=agents, next_page_token=token)

    async def UpdateAgent(
        self, request: pb.UpdateAgentRequest, context: grpc.aio.ServicerContext
    ) -> res.Agent:
        tenant_id, agent_id = AGENT.parse(request.agent.name, "agent.name")
        require_tenant(tenant_id)
        paths = update_paths(request.update_mask, REVISION_FIELDS, IGNORED_FIELDS)
        note_resource(request.agent.name)
        agent = await self._db.write(
            tenant_id, _update_agent, agent_id, request.agent, paths, self._router.names
        )
        if agent is None:
            raise errors.agent_not_found(request.agent.name)
        return agent_to_proto(agent)

    async def DeleteAgent(
        self, request: pb.DeleteAgentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, agent_id = AGENT.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, store.delete_agent, agent_id, utcnow()):
            raise errors.agent_not_found(request.name)
        return empty_pb2.Empty()

    async def GetAgentRevision(
        self, request: pb.GetAgentRevisionRequest, context: grpc.aio.ServicerContext
    ) -> res.AgentRevision:
        tenant_id, agent_id, revision_id = AGENT_REVISION.parse(request.name, "name")
        require_tenant(tenant_id)
        revision = await self._db.read(tenant_id, store.get_revision, agent_id, revision_id)
        if revision is None:
            raise errors.revision_not_found(request.name)
        return revision_to_proto(revision)

    async def ListAgentRevisions(
        self, request: pb.ListAgentRevisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentRevisionsResponse:
        tenant_id, agent_id = AGENT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listed = await self._db.read(tenant_id, store.list_revisions, agent_id, page)
        if listed is None:
            raise errors.agent_not_found(request.parent)
        revisions, token = listed.messages(revision_to_proto)
        return pb.ListAgentRevisionsResponse(agent_revisions=revisions, next_page_token=token)

    async def ListAgentTemplates(
        self, request: pb.ListAgentTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentTemplatesResponse:
        # Without an industry asked for, the caller's tenant's (its token's claim) comes first.
        industry = request.industry or current_principal().industry
        page = page_of(request.page_size, request.page_token, "agentTemplates", industry)
        offered = [_TEMPLATE_PROTOS[t.id] for t in agent_templates.offered(industry)]
        start = 0
        if page.after is not None:
            start = next((i + 1 for i, t in enumerate(offered) if [t.name] == list(page.after)), len(offered))
        listed = offered[start : start + page.size]
        token = page.token_after([listed[-1].name]) if start + page.size < len(offered) else ""
        return pb.ListAgentTemplatesResponse(agent_templates=listed, next_page_token=token)

    async def GetAgentTemplate(
        self, request: pb.GetAgentTemplateRequest, context: grpc.aio.ServicerContext
    ) -> res.AgentTemplate:
        (template_id,) = AGENT_TEMPLATE.parse(request.name, "name")
        template = _TEMPLATE_PROTOS.get(template_id)
        if template is None:
            raise errors.agent_template_not_found(request.name)
        return template

    async def CreateRun(self, request: pb.CreateRunRequest, context: grpc.aio.ServicerContext) -> res.Run:
        tenant_id, agent_id = AGENT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if not request.run.input.strip():  # its length is the contract's rule
            raise invalid("run.input", "must not be blank")
        pinned = None
        if request.agent_revision:
            revision_tenant, revision_agent, pinned = AGENT_REVISION.parse(
                request.agent_revision, "agent_revision"
            )
            if (revision_tenant, revision_agent) != (tenant_id, agent_id):
                raise invalid("agent_revision", f"is not a revision of {request.parent}")
        thread_id = None
        if request.run.thread:
            thread_tenant, thread_id = THREAD.parse(request.run.thread, "run.thread")
            if thread_tenant != tenant_id:
                raise invalid("run.thread", f"is not a thread of tenants/{tenant_id}")
        subject = await self._db.read(
            tenant_id,
            store.run_subject,
            agent_id,
            pinned,
            request.request_id or None,
            thread_id,
            threads.MAX_HISTORY_MESSAGES,
        )
        agent, revision, earlier = subject.agent, subject.revision, subject.earlier
        if agent is None:
            raise errors.agent_not_found(request.parent)
        if earlier is not None:
            if earlier.state == RunState.RUNNING:  # its executor may have died
                earlier = await self._db.write(
                    tenant_id, store.interrupt_if_expired, earlier, self._leases.clock()
                )
            return run_to_proto(earlier)
        if revision is None:
            raise errors.revision_not_found(request.agent_revision)
        if thread_id is not None and subject.thread is None:
            raise errors.thread_not_found(request.run.thread)
        history = threads.chat_messages(threads.window(subject.history, self._limits.history_tokens))
        run_id = new_id()
        run_name = RUN.format(tenant_id, agent_id, run_id)
        # A hold on the quota for the most the run may spend; the tools flag (for an agent
        # with tools) and the tenant's model route (for an agent that names no model) are
        # evaluated in memory, from the flags the agent syncs (services.agent.flags).
        await self._peers.reserve(
            tenant_id,
            run_id,
            run_name,
            {"agent_runs": 1, **self.executor.hold(revision)},
            self.executor.hold_seconds,
        )
        tools_enabled = bool(revision.tools) and self._flags.tools_enabled(tenant_id, request.parent)
        tenant_route = "" if revision.model else self._flags.model_route(tenant_id, request.parent)
        run = RunRow(
            tenant_id=tenant_id,
            id=run_id,
            agent_id=agent_id,
            input=request.run.input,
            output="",
            state=RunState.RUNNING,
            tool_calls=[],
            input_tokens=0,
            output_tokens=0,
            model_calls=0,
            model=revision.model or self._tenant_default(tenant_route),
            tools_enabled=tools_enabled,
            error_reason="",
            error_message="",
            request_id=request.request_id or None,
            create_time=self._leases.clock(),
            end_time=None,
            executor=self._leases.executor,
            lease_expire_time=self._leases.expiry(),
            agent_revision_id=revision.id,
            thread_id=thread_id or "",
            last_sequence=0,
            checkpoint=None,
            pending_tool_calls=[],
            approval_request_id=None,
            cancel_time=None,
            principal=current_principal().subject[:300],
        )
        note_resource(run_name)
        try:
            created = await self._db.write(tenant_id, store.start_run, run, self._limits.max_running)
        except store.AgentGone:  # the agent was deleted meanwhile
            await self._peers.release(tenant_id, run_id)
            raise errors.agent_not_found(request.parent) from None
        except store.TooManyRuns:
            await self._peers.release(tenant_id, run_id)
            raise errors.too_many_runs(self._limits.max_running) from None
        if created is run:
            self.executor.start(revision, run, Checkpoint.start(run.input, history))
        else:  # a concurrent retry with the same request_id won
            await self._peers.release(tenant_id, run_id)
        return run_to_proto(created)

    async def StreamRunEvents(
        self, request: pb.StreamRunEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[res.RunEvent]:
        run = await self._run(request.name)
        async for event in self._events.follow(run, request.after_sequence):
            yield event

    async def WaitRun(self, request: pb.WaitRunRequest, context: grpc.aio.ServicerContext) -> res.Run:
        run = await self._run(request.name)
        timeout = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else 60.0
        try:
            async with asyncio.timeout(timeout):
                run = await self._events.settled(run)
        except TimeoutError:
            stored = await self._db.read(run.tenant_id, store.get_run, run.agent_id, run.id)
            assert stored is not None, "runs are never deleted"
            run = stored
        return run_to_proto(run)

    async def CancelRun(self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext) -> res.Run:
        tenant_id, agent_id, run_id = RUN.parse(request.name, "name")
        require_tenant(tenant_id)
        note_resource(request.name)
        run = await self._db.write(tenant_id, store.cancel_run, agent_id, run_id, self._leases.clock())
        if run is None:
            raise errors.run_not_found(request.name)
        if run.state == RunState.RUNNING:
            # Its executor stops it: at once when that is this replica, else when it next
            # checks in (within a second); a dead one's run is failed by the lease sweeper.
            self.executor.cancel_local(run_id)
            try:
                async with asyncio.timeout(CANCEL_WAIT_SECONDS):
                    run = await self._events.settled(run)
            except TimeoutError:
                pass
        return run_to_proto(run)

    async def SubmitToolApprovals(
        self, request: pb.SubmitToolApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> res.Run:
        run = await self._run(request.name)
        note_resource(request.name)
        if run.state != RunState.REQUIRES_ACTION:
            if request.request_id and run.approval_request_id == request.request_id:
                return run_to_proto(run)
            raise errors.not_awaiting_approval(request.name, f"STATE_{run.state}")
        decisions = _decisions(request.approvals, run.pending_tool_calls)
        revision = await self._db.read(run.tenant_id, store.get_revision, run.agent_id, run.agent_revision_id)
        assert revision is not None, "revisions are never deleted while their runs exist"
        hold_id = stretch_id(run)
        await self._peers.reserve(
            run.tenant_id, hold_id, request.name, self.executor.hold(revision), self.executor.hold_seconds
        )
        try:
            resumed = await self._db.write(
                run.tenant_id,
                store.resume_run,
                run,
                self._leases.executor,
                self._leases.clock(),
                self._leases.expiry(),
                request.request_id or None,
                self._limits.max_running,
            )
        except store.TooManyRuns:
            await self._peers.release(run.tenant_id, hold_id)
            raise errors.too_many_runs(self._limits.max_running) from None
        if resumed is None:  # decided meanwhile by another call
            await self._peers.release(run.tenant_id, hold_id)
            return await self.SubmitToolApprovals(request, context)
        assert run.checkpoint is not None, "a run waiting for approvals has its checkpoint"
        self.executor.start(revision, resumed, Checkpoint.from_json(run.checkpoint), decisions)
        return run_to_proto(resumed)

    async def ReplayRun(
        self, request: pb.ReplayRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayRunResponse:
        run = await self._run(request.name)
        if run.state == RunState.RUNNING:
            raise errors.run_in_progress(request.name)
        revision = await self._db.read(run.tenant_id, store.get_revision, run.agent_id, run.agent_revision_id)
        assert revision is not None, "revisions are never deleted while their runs exist"
        recorded = [event async for event in self._events.follow(run, 0)]
        if not recorded[0].HasField("run_started"):
            raise errors.run_not_recorded(request.name)
        finished = recorded[-1].run_finished if recorded[-1].HasField("run_finished") else run_to_proto(run)
        replayed = await replay(
            run, self.executor.spec(revision, run), recorded, finished, self._limits.timeout_seconds
        )
        return pb.ReplayRunResponse(
            events=replayed.events, identical=not replayed.difference, difference=replayed.difference[:100000]
        )

    def _tenant_default(self, route: str) -> str:
        """Returns what an agent that names no model asks.

        That is the tenant's route (its ``agent-model-route`` flag) when it is configured,
        else the deployment's default; an unknown route falls back to the default.
        """
        return f"{ROUTE_PREFIX}{route}" if route in self._router.names else self._default_model

    async def _run(self, name: str) -> RunRow:
        """Returns the caller's run named ``name``.

        Raises:
            NotFound: ``RUN_NOT_FOUND``.
        """
        tenant_id, agent_id, run_id = RUN.parse(name, "name")
        require_tenant(tenant_id)
        run = await self._db.read(tenant_id, store.get_run, agent_id, run_id)
        if run is None:
            raise errors.run_not_found(name)
        return run

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> res.Run:
        return run_to_proto(await self._run(request.name))

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        tenant_id, agent_id = AGENT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listed = await self._db.read(tenant_id, store.list_runs, agent_id, page)
        if listed is None:
            raise errors.agent_not_found(request.parent)
        runs, token = listed.messages(run_to_proto)
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    async def CreateThread(
        self, request: pb.CreateThreadRequest, context: grpc.aio.ServicerContext
    ) -> res.Thread:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if request.thread_id:
            validate_id(request.thread_id, "thread_id")
        now = utcnow()
        thread = ThreadRow(
            tenant_id=tenant_id,
            id=request.thread_id or new_id(),
            thread_metadata=dict(request.thread.metadata),
            request_id=request.request_id or None,
            create_time=now,
            update_time=now,
        )
        name = THREAD.format(tenant_id, thread.id)
        note_resource(name)
        created = await self._db.write(tenant_id, store.create_thread, thread)
        if created is None:
            raise errors.thread_exists(name)
        return thread_to_proto(created)

    async def GetThread(self, request: pb.GetThreadRequest, context: grpc.aio.ServicerContext) -> res.Thread:
        tenant_id, thread_id = THREAD.parse(request.name, "name")
        require_tenant(tenant_id)
        thread = await self._db.read(tenant_id, store.get_thread, thread_id)
        if thread is None:
            raise errors.thread_not_found(request.name)
        return thread_to_proto(thread)

    async def ListThreads(
        self, request: pb.ListThreadsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListThreadsResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_threads, page)
        listed, token = listing.messages(thread_to_proto)
        return pb.ListThreadsResponse(threads=listed, next_page_token=token)

    async def DeleteThread(
        self, request: pb.DeleteThreadRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, thread_id = THREAD.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, store.delete_thread, thread_id):
            raise errors.thread_not_found(request.name)
        return empty_pb2.Empty()

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesResponse:
        tenant_id, thread_id = THREAD.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listed = await self._db.read(tenant_id, store.list_messages, thread_id, page)
        if listed is None:
            raise errors.thread_not_found(request.parent)
        messages, token = listed.messages(message_to_proto)
        return pb.ListMessagesResponse(messages=messages, next_page_token=token)

    async def ListTools(
        self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListToolsResponse:
        tools = list(_TOOL_PROTOS.values())
        unavailable: list[str] = []
        if request.parent:
            (tenant_id,) = TENANT.parse(request.parent, "parent")
            require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, "tools", request.parent)
        if request.parent:
            rows = await self._db.read(tenant_id, store.all_mcp_servers, mcp.MAX_SERVERS)
            endpoints = []
            for row in rows:
                try:
                    endpoints.append(mcp.McpEndpoint.of(row, self._sealer))
                except Exception:  # the stored headers do not open (the key changed)
                    unavailable.append(MCP_SERVER.format(row.tenant_id, row.id))
            (offered, failed), http = await asyncio.gather(
                mcp.catalog_of(endpoints, self._mcp),
                self._db.read(tenant_id, http_tool_store.all_http_tools, mcp.MAX_SERVERS),
            )
            tools += [_tool_to_proto(tool) for tool in offered]
            tools += [_tool_to_proto(http_tools.HttpTool.of(row, self._sealer, self._egress)) for row in http]
            unavailable += failed
        start = 0
        if page.after is not None:
            start = next((i + 1 for i, t in enumerate(tools) if [t.name] == list(page.after)), len(tools))
        listed = tools[start : start + page.size]
        token = page.token_after([listed[-1].name]) if start + page.size < len(tools) else ""
        return pb.ListToolsResponse(
            tools=listed, next_page_token=token, unavailable_mcp_servers=sorted(unavailable)
        )

    async def CallTool(
        self, request: pb.CallToolRequest, context: grpc.aio.ServicerContext
    ) -> pb.CallToolResponse:
        """Calls a built-in tool or an HTTP tool for the tenant in ``parent``, as a run's tool call would.

        Raises:
            InvalidArgument: ``arguments`` break the tool's JSON Schema (one violation per
                error, under ``arguments``), or a built-in tool refused them (``ToolError``).
            NotFound: ``TOOL_NOT_FOUND``, no built-in tool or HTTP tool of the tenant of that name.
            Unavailable: ``TOOL_FAILED``, an HTTP tool's call or ``send_notification`` failed.
            PermissionDenied: ``parent`` is not the caller's tenant.
        """
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        tool: RunTool | None
        if http_tools.is_http_tool(request.name):
            tool = await self.http_tool_of(tenant_id, request.name)
        elif request.name == SEND_NOTIFICATION:
            tool = self.send_notification_tool(tenant_id)
        else:
            tool = catalog.CATALOG.get(request.name)
        if tool is None:
            raise errors.tool_not_found(request.name)
        arguments = from_struct(request.arguments)
        violations = argument_violations(tool, arguments)
        if violations:
            raise InvalidArgument(violations)
        try:
            result = await tool.call(arguments)
        except catalog.ToolError as error:
            if isinstance(tool, catalog.Tool):
                raise invalid("arguments", str(error)) from None
            raise errors.tool_failed(request.name, str(error)) from None
        return pb.CallToolResponse(result=to_value(result))

    async def CreateMcpServer(
        self, request: pb.CreateMcpServerRequest, context: grpc.aio.ServicerContext
    ) -> res.McpServer:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        _validate_mcp_server(request.mcp_server, request.mcp_server_id, self._egress)
        server_id = request.mcp_server_id or new_id()
        name = MCP_SERVER.format(tenant_id, server_id)
        now = utcnow()
        headers = dict(request.mcp_server.headers)
        server = McpServerRow(
            tenant_id=tenant_id,
            id=server_id,
            display_name=request.mcp_server.display_name,
            url=request.mcp_server.url,
            header_names=sorted(h.lower() for h in headers),
            headers_sealed=mcp.seal_headers(self._sealer, name, headers),
            allowed_tools=list(request.mcp_server.allowed_tools),
            request_id=request.request_id or None,
            create_time=now,
            update_time=now,
        )
        note_resource(name)
        created = await self._db.write(tenant_id, store.create_mcp_server, server)
        if created is None:
            raise errors.mcp_server_exists(name)
        return mcp_server_to_proto(created)

    async def GetMcpServer(
        self, request: pb.GetMcpServerRequest, context: grpc.aio.ServicerContext
    ) -> res.McpServer:
        tenant_id, server_id = MCP_SERVER.parse(request.name, "name")
        require_tenant(tenant_id)
        server = await self._db.read(tenant_id, store.get_mcp_server, server_id)
        if server is None:
            raise errors.mcp_server_not_found(request.name)
        return mcp_server_to_proto(server)

    async def ListMcpServers(
        self, request: pb.ListMcpServersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMcpServersResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_mcp_servers, page)
        servers, token = listing.messages(mcp_server_to_proto)
        return pb.ListMcpServersResponse(mcp_servers=servers, next_page_token=token)

    async def UpdateMcpServer(
        self, request: pb.UpdateMcpServerRequest, context: grpc.aio.ServicerContext
    ) -> res.McpServer:
        tenant_id, server_id = MCP_SERVER.parse(request.mcp_server.name, "mcp_server.name")
        require_tenant(tenant_id)
        paths = update_paths(request.update_mask, MCP_SERVER_FIELDS, MCP_IGNORED_FIELDS)
        _validate_mcp_server(request.mcp_server, "", self._egress, paths)
        values: dict[str, Any] = {
            field: getattr(request.mcp_server, field) for field in paths if field != "headers"
        }
        if "allowed_tools" in values:
            values["allowed_tools"] = list(values["allowed_tools"])
        if "headers" in paths:
            headers = dict(request.mcp_server.headers)
            values["header_names"] = sorted(h.lower() for h in headers)
            values["headers_sealed"] = mcp.seal_headers(self._sealer, request.mcp_server.name, headers)
        values["update_time"] = utcnow()
        note_resource(request.mcp_server.name)
        updated = await self._db.write(tenant_id, store.update_mcp_server, server_id, values)
        if updated is None:
            raise errors.mcp_server_not_found(request.mcp_server.name)
        return mcp_server_to_proto(updated)

    async def DeleteMcpServer(
        self, request: pb.DeleteMcpServerRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, server_id = MCP_SERVER.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, store.delete_mcp_server, server_id):
            raise errors.mcp_server_not_found(request.name)
        return empty_pb2.Empty()


def mcp_server_to_proto(server: McpServerRow) -> res.McpServer:
    """Maps an MCP server row to its resource: header names only, never their values."""
    return res.McpServer(
        name=MCP_SERVER.format(server.tenant_id, server.id),
        display_name=server.display_name,
        url=server.url,
        header_names=server.header_names,
        allowed_tools=server.allowed_tools,
        create_time=to_timestamp(server.create_time),
        update_time=to_timestamp(server.update_time),
    )


def _validate_mcp_server(
    server: res.McpServer, server_id: str, egress: EgressPolicy, paths: Sequence[str] = MCP_SERVER_FIELDS
) -> None:
    """Checks an MCP server against the rules of ``CreateMcpServer`` (the fields in ``paths``).

    Lengths and counts are the contract's rules (checked before); these are the rest, and
    the egress policy's refusal of a URL whose host is an internal address literal.

    Raises:
        InvalidArgument: With a violation per bad field.
    """
    violations: list[FieldViolation] = []
    if server_id:
        try:
            validate_id(server_id, "mcp_server_id")
        except InvalidArgument as error:
            violations += error.violations
    if "url" in paths:
        violations += mcp.url_violations(server.url, "mcp_server.url", egress)
    if "headers" in paths:
        violations += mcp.header_violations(server.headers, "mcp_server.headers")
    if "allowed_tools" in paths:
        violations += mcp.allowed_tool_violations(list(server.allowed_tools), "mcp_server.allowed_tools")
    if violations:
        raise InvalidArgument(violations)


def _decisions(
    approvals: Sequence[res.ToolApproval], pending: Sequence[dict[str, Any]]
) -> dict[str, Decision]:
    """Returns the decision on each pending call, by call ID.

    Raises:
        InvalidArgument: A pending call without a decision, a decision for a call that is
            not pending or a second one for a call, ``arguments`` on a rejection or not a
            JSON object.
    """
    pending_ids = {call["id"] for call in pending}
    decisions: dict[str, Decision] = {}
    violations = []
    for i, approval in enumerate(approvals):
        where = f"approvals[{i}]"
        if approval.tool_call_id not in pending_ids:
            violations.append(
                FieldViolation(f"{where}.tool_call_id", "is not a pending tool call of the run")
            )
            continue
        if approval.tool_call_id in decisions:
            violations.append(FieldViolation(f"{where}.tool_call_id", "was decided already in this request"))
            continue
        approve = approval.decision == res.ToolApproval.DECISION_APPROVE
        if approval.arguments:
            if not approve:
                violations.append(
                    FieldViolation(f"{where}.arguments", "only an approval may edit the arguments")
                )
            elif not _is_json_object(approval.arguments):
                violations.append(FieldViolation(f"{where}.arguments", "must be a JSON object"))
        decisions[approval.tool_call_id] = Decision(approve, approval.reason, approval.arguments)
    for call_id in sorted(pending_ids - set(decisions)):
        violations.append(FieldViolation("approvals", f"the pending tool call {call_id!r} has no decision"))
    if violations:
        raise InvalidArgument(violations)
    return decisions


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def argument_violations(tool: RunTool, arguments: Mapping[str, Any]) -> list[FieldViolation]:
    """Checks a tool call's arguments against the tool's JSON Schema (2020-12).

    Returns:
        One violation per schema error, its field the JSON path under ``arguments``
        (``arguments.origin``, ``arguments.lines[0].quantity``); a missing required
        property is named by its own path. Empty when the arguments are valid.
    """
    violations: dict[str, FieldViolation] = {}
    for error in tool.validator.iter_errors(arguments):
        path = "arguments" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        )
        if error.validator == "required" and isinstance(error.instance, Mapping):
            for key in error.validator_value:
                if key not in error.instance:
                    field = f"{path}.{key}"
                    violations.setdefault(
                        field, FieldViolation(field, "is required by the tool's JSON Schema")
                    )
            continue
        violations.setdefault(path, FieldViolation(path, error.message[:500]))
    return list(violations.values())


def _tool_to_proto(tool: RunTool) -> res.Tool:
    message = res.Tool(name=tool.name, description=tool.description, function_name=tool.function_name)
    message.parameters.update(tool.parameters)
    return message


# The catalog is code: its resources are built once.
_TOOL_PROTOS = {name: _tool_to_proto(tool) for name, tool in catalog.CATALOG.items()}
# The templates are data shipped with the release: read, checked and built once, at start-up.
_TEMPLATES = {template.id: template for template in agent_templates.templates()}
_TEMPLATE_PROTOS = {template.id: template_to_proto(template) for template in _TEMPLATES.values()}
_TOOL_PROTOS[SEND_NOTIFICATION] = res.Tool(
    name=SEND_NOTIFICATION, description=SEND_NOTIFICATION_DESCRIPTION, function_name="send_notification"
)
_TOOL_PROTOS[SEND_NOTIFICATION].parameters.update(SEND_NOTIFICATION_PARAMETERS)
