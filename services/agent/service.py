"""AgentService: protos in, domain calls, protos out."""

from __future__ import annotations

import asyncio
import logging

import grpc
import openai
from google.protobuf import empty_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import errors, store
from services.agent import tools as catalog
from services.agent.models import Agent, Run
from services.agent.peers import Peers
from services.agent.runner import AgentSpec, ModelError, run_agent
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database
from services.kit.errors import FieldViolation, InvalidArgument, error_status
from services.kit.names import new_id, parse, validate_id
from services.kit.pagination import page_of
from services.kit.timestamps import to_timestamp, utcnow

log = logging.getLogger(__name__)

MAX_TEXT = 32_000
DOMAIN = "agent.orchestrall.dev"
DEFAULT_MAX_OUTPUT_TOKENS = 256
_STATES = {
    "RUNNING": res.Run.STATE_RUNNING,
    "SUCCEEDED": res.Run.STATE_SUCCEEDED,
    "FAILED": res.Run.STATE_FAILED,
}


def agent_to_proto(agent: Agent) -> res.Agent:
    """Maps an agent row to its resource."""
    message = res.Agent(
        name=f"tenants/{agent.tenant_id}/agents/{agent.id}",
        display_name=agent.display_name,
        model=agent.model,
        instructions=agent.instructions,
        tools=agent.tools,
        max_output_tokens=agent.max_output_tokens,
        tool_choice=res.ToolChoice.Value(agent.tool_choice),
        create_time=to_timestamp(agent.create_time),
    )
    if agent.temperature is not None:
        message.temperature = agent.temperature
    return message


def run_to_proto(run: Run) -> res.Run:
    """Maps a run row to its resource."""
    message = res.Run(
        name=f"tenants/{run.tenant_id}/agents/{run.agent_id}/runs/{run.id}",
        input=run.input,
        output=run.output,
        state=_STATES[run.state],
        tool_calls=[res.ToolCall(**call) for call in run.tool_calls],
        usage=res.Usage(
            input_tokens=run.input_tokens, output_tokens=run.output_tokens, model_calls=run.model_calls
        ),
        model=run.model,
        tools_enabled=run.tools_enabled,
        create_time=to_timestamp(run.create_time),
        end_time=to_timestamp(run.end_time),
    )
    if run.error_reason:  # runs fail only when the model endpoint does
        message.error.CopyFrom(
            error_status(grpc.StatusCode.UNAVAILABLE, run.error_reason, run.error_message, DOMAIN)
        )
    return message


def _validate_agent(agent: res.Agent, agent_id: str) -> None:
    violations = []
    if agent_id:
        try:
            validate_id(agent_id, "agent_id")
        except InvalidArgument as error:
            violations += error.violations
    if not agent.instructions.strip() or len(agent.instructions) > MAX_TEXT:
        violations.append(FieldViolation("agent.instructions", f"is required, at most {MAX_TEXT} characters"))
    for i, tool in enumerate(agent.tools):
        if tool not in catalog.CATALOG:
            violations.append(FieldViolation(f"agent.tools[{i}]", f"unknown tool {tool!r}; see ListTools"))
    if agent.HasField("temperature") and not 0 <= agent.temperature <= 2:
        violations.append(FieldViolation("agent.temperature", "must be between 0 and 2"))
    if not 0 <= agent.max_output_tokens <= 4096:
        violations.append(
            FieldViolation("agent.max_output_tokens", "must be between 1 and 4096, or 0 for 256")
        )
    if agent.tool_choice == res.TOOL_CHOICE_REQUIRED and not agent.tools:
        violations.append(FieldViolation("agent.tool_choice", "TOOL_CHOICE_REQUIRED needs at least one tool"))
    if violations:
        raise InvalidArgument(violations)


class AgentService(pb_grpc.AgentServiceServicer):
    """Agents and runs.

    Args:
        db: The agent database.
        model_client: OpenAI-compatible client for every model call.
        default_model: Model used when an agent names none.
        peers: Billing and flag calls.
    """

    def __init__(
        self, db: Database, model_client: openai.AsyncOpenAI, default_model: str, peers: Peers
    ) -> None:
        self._db = db
        self._executions: set[asyncio.Task[None]] = set()
        self._model = model_client
        self._default_model = default_model
        self._peers = peers

    async def CreateAgent(
        self, request: pb.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> res.Agent:
        (tenant_id,) = parse(request.parent, "parent", "tenants")
        require_tenant(tenant_id)
        _validate_agent(request.agent, request.agent_id)
        agent = Agent(
            tenant_id=tenant_id,
            id=request.agent_id or new_id(),
            display_name=request.agent.display_name[:200],
            model=request.agent.model,
            instructions=request.agent.instructions,
            tools=list(request.agent.tools),
            temperature=request.agent.temperature if request.agent.HasField("temperature") else None,
            max_output_tokens=request.agent.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
            tool_choice=res.ToolChoice.Name(request.agent.tool_choice or res.TOOL_CHOICE_AUTO),
            request_id=request.request_id or None,
            create_time=utcnow(),
        )
        note_resource(f"{request.parent}/agents/{agent.id}")
        async with self._db.transaction() as session:
            created = await store.create_agent(session, agent)
        if created is None:
            raise errors.agent_exists(f"{request.parent}/agents/{agent.id}")
        return agent_to_proto(created)

    async def GetAgent(self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext) -> res.Agent:
        tenant_id, agent_id = parse(request.name, "name", "tenants", "agents")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            agent = await store.get_agent(session, tenant_id, agent_id)
        if agent is None:
            raise errors.agent_not_found(request.name)
        return agent_to_proto(agent)

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        (tenant_id,) = parse(request.parent, "parent", "tenants")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        async with self._db.transaction() as session:
            rows = await store.list_agents(session, tenant_id, page.offset, page.limit)
        page_rows, token = page.split(rows)
        return pb.ListAgentsResponse(agents=[agent_to_proto(a) for a in page_rows], next_page_token=token)

    async def DeleteAgent(
        self, request: pb.DeleteAgentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, agent_id = parse(request.name, "name", "tenants", "agents")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            if not await store.delete_agent(session, tenant_id, agent_id):
                raise errors.agent_not_found(request.name)
        return empty_pb2.Empty()

    async def CreateRun(self, request: pb.CreateRunRequest, context: grpc.aio.ServicerContext) -> res.Run:
        tenant_id, agent_id = parse(request.parent, "parent", "tenants", "agents")
        require_tenant(tenant_id)
        if not request.run.input.strip() or len(request.run.input) > MAX_TEXT:
            raise InvalidArgument(
                [FieldViolation("run.input", f"is required, at most {MAX_TEXT} characters")]
            )
        async with self._db.transaction() as session:
            agent = await store.get_agent(session, tenant_id, agent_id)
            if agent is None:
                raise errors.agent_not_found(request.parent)
            if request.request_id and (
                earlier := await store.run_by_request(session, tenant_id, agent_id, request.request_id)
            ):
                return run_to_proto(earlier)
        await self._peers.check_entitlement(tenant_id, "agent_runs", 1)
        await self._peers.check_entitlement(tenant_id, "model_output_tokens", agent.max_output_tokens)
        tools_enabled = bool(agent.tools) and await self._peers.tools_enabled(tenant_id, request.parent)
        run = Run(
            tenant_id=tenant_id,
            id=new_id(),
            agent_id=agent_id,
            input=request.run.input,
            state="RUNNING",
            tool_calls=[],
            model=agent.model or self._default_model,
            tools_enabled=tools_enabled,
            request_id=request.request_id or None,
            create_time=utcnow(),
        )
        note_resource(f"{request.parent}/runs/{run.id}")
        async with self._db.transaction() as session:
            created = await store.create_run(session, run)
        if created is not run:  # a concurrent retry with the same request_id won
            return run_to_proto(created)
        # A caller that goes away (a workflow process restarting) must not leave the run
        # RUNNING forever: it finishes in its own task; a retry with the same request_id
        # then finds it.
        execution = asyncio.create_task(self._execute(agent, run), name=f"run-{run.id}")
        self._executions.add(execution)
        execution.add_done_callback(self._executions.discard)
        await asyncio.shield(execution)
        return run_to_proto(run)

    async def _execute(self, agent: Agent, run: Run) -> None:
        spec = AgentSpec(
            model=run.model,
            instructions=agent.instructions,
            tools=agent.tools,
            temperature=agent.temperature,
            max_output_tokens=agent.max_output_tokens,
            tool_choice_required=agent.tool_choice == "TOOL_CHOICE_REQUIRED",
        )
        try:
            outcome = await run_agent(self._model, spec, run.input, run.tools_enabled)
        except ModelError as error:
            run.state, run.error_reason, run.error_message = "FAILED", error.reason, str(error)
        else:
            run.state, run.output, run.model = "SUCCEEDED", outcome.output, outcome.model
            run.tool_calls = outcome.tool_calls
            run.input_tokens, run.output_tokens = outcome.input_tokens, outcome.output_tokens
            run.model_calls = outcome.model_calls
        run.end_time = utcnow()
        async with self._db.transaction() as session:
            await store.save_run(session, run)
        name = f"tenants/{run.tenant_id}/agents/{run.agent_id}/runs/{run.id}"
        await self._peers.record_usage(
            run.tenant_id,
            name,
            run.id,
            {
                "agent_runs": 1,
                "model_input_tokens": run.input_tokens,
                "model_output_tokens": run.output_tokens,
            },
        )

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> res.Run:
        tenant_id, agent_id, run_id = parse(request.name, "name", "tenants", "agents", "runs")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            run = await store.get_run(session, tenant_id, agent_id, run_id)
        if run is None:
            raise errors.run_not_found(request.name)
        return run_to_proto(run)

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        tenant_id, agent_id = parse(request.parent, "parent", "tenants", "agents")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        async with self._db.transaction() as session:
            if await store.get_agent(session, tenant_id, agent_id) is None:
                raise errors.agent_not_found(request.parent)
            rows = await store.list_runs(session, tenant_id, agent_id, page.offset, page.limit)
        page_rows, token = page.split(rows)
        return pb.ListRunsResponse(runs=[run_to_proto(r) for r in page_rows], next_page_token=token)

    async def ListTools(
        self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListToolsResponse:
        page = page_of(request.page_size, request.page_token, "tools")
        tools, token = page.split(list(catalog.CATALOG.values())[page.offset : page.offset + page.limit])
        listed = []
        for tool in tools:
            message = res.Tool(name=tool.name, description=tool.description)
            message.parameters.update(tool.parameters)
            listed.append(message)
        return pb.ListToolsResponse(tools=listed, next_page_token=token)
