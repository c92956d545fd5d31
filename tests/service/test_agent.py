"""Agent service over real gRPC with the real model server, billing and flag."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import struct_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from orchestrall.billing.v1 import billing_service_pb2 as billing_pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as billing_grpc
from orchestrall.flag.v1 import flag_service_pb2 as flag_pb
from orchestrall.flag.v1 import flag_service_pb2_grpc as flag_grpc
from orchestrall.flag.v1 import resources_pb2 as flag_res
from services.agent.tools import route_distance
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, flag_synced, new_tenant, run_to_end

PLANNER = res.Agent(
    display_name="Route planner",
    instructions="You plan truck routes. Use the route_distance tool, then answer in one sentence.",
    tools=["tools/route_distance"],
    tool_choice=res.TOOL_CHOICE_REQUIRED,
    temperature=0,
    max_output_tokens=48,
)


async def create_planner(stub: pb_grpc.AgentServiceStub, tenant: Tenant) -> res.Agent:
    return await stub.CreateAgent(
        pb.CreateAgentRequest(parent=tenant.name, agent=PLANNER, agent_id="planner"), metadata=tenant.metadata
    )


async def usage(mesh: Mesh, tenant: Tenant) -> dict[str, float]:
    async with mesh.channel("billing") as channel:
        summary = await billing_grpc.BillingServiceStub(channel).GetUsageSummary(
            billing_pb.GetUsageSummaryRequest(name=f"{tenant.name}/usageSummary"), metadata=tenant.metadata
        )
    return {m.meter: m.quantity for m in summary.meters}


async def test_run_calls_the_tool_and_meters_usage(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await create_planner(stub, tenant)
        assert agent.name == f"{tenant.name}/agents/planner"
        run = await run_to_end(
            stub,
            pb.CreateRunRequest(
                parent=agent.name, run=res.Run(input="Distance from Rotterdam to Berlin?"), request_id="r1"
            ),
            metadata=tenant.metadata,
        )
        assert run.state == res.Run.STATE_SUCCEEDED, run.error
        assert run.tools_enabled
        assert run.tool_calls, "the planner must call route_distance"
        call = run.tool_calls[0]
        assert call.tool == "tools/route_distance" and not call.failed
        assert json.loads(call.result) == route_distance(json.loads(call.arguments))
        assert run.usage.input_tokens > 0 and run.usage.output_tokens > 0 and run.usage.model_calls >= 2
        again = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="ignored on retry"), request_id="r1"),
            metadata=tenant.metadata,
        )
        assert again.name == run.name
        fetched = await stub.GetRun(pb.GetRunRequest(name=run.name), metadata=tenant.metadata)
        assert fetched.output == run.output and len(fetched.tool_calls) == len(run.tool_calls)
        listed = await stub.ListRuns(pb.ListRunsRequest(parent=agent.name), metadata=tenant.metadata)
        assert [r.name for r in listed.runs] == [run.name]
    metered = await usage(mesh, tenant)
    assert metered["agent_runs"] == 1
    assert metered["model_input_tokens"] == run.usage.input_tokens
    assert metered["model_output_tokens"] == run.usage.output_tokens


async def test_the_agent_tools_flag_turns_tools_off(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("flag") as channel, flag_synced(mesh.servers["agent"], tenant, "agent-tools"):
        variants = {"on": struct_pb2.Value(bool_value=True), "off": struct_pb2.Value(bool_value=False)}
        await flag_grpc.FlagServiceStub(channel).CreateFlag(
            flag_pb.CreateFlagRequest(
                parent=tenant.name,
                flag_id="agent-tools",
                flag=flag_res.Flag(
                    state=flag_res.Flag.STATE_ENABLED, variants=variants, default_variant="off"
                ),
            ),
            metadata=tenant.metadata,
        )
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await create_planner(stub, tenant)
        run = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam to Paris?")),
            metadata=tenant.metadata,
        )
    assert run.state == res.Run.STATE_SUCCEEDED
    assert not run.tools_enabled and not run.tool_calls
    assert run.usage.model_calls == 1


async def test_bad_agents_are_rejected_with_field_violations(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateAgent(
                pb.CreateAgentRequest(
                    parent=tenant.name,
                    agent_id="Bad Id",
                    agent=res.Agent(
                        tools=["tools/teleport"], temperature=3, tool_choice=res.TOOL_CHOICE_REQUIRED
                    ),
                ),
                metadata=tenant.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(caught.value)) == {
            "agent_id",
            "agent.instructions",
            "agent.tools[0]",
            "agent.temperature",
        }
        listed = await stub.ListAgents(pb.ListAgentsRequest(parent=tenant.name), metadata=tenant.metadata)
        assert not listed.agents, "a rejected create must write nothing"


async def test_other_tenants_cannot_see_or_run_agents(mesh: Mesh) -> None:
    owner, intruder = await new_tenant(mesh), await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await create_planner(stub, owner)
        for call in (
            stub.GetAgent(pb.GetAgentRequest(name=agent.name), metadata=intruder.metadata),
            stub.CreateRun(
                pb.CreateRunRequest(parent=agent.name, run=res.Run(input="x")), metadata=intruder.metadata
            ),
            stub.DeleteAgent(pb.DeleteAgentRequest(name=agent.name), metadata=intruder.metadata),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetAgent(
                pb.GetAgentRequest(name=f"{intruder.name}/agents/planner"), metadata=intruder.metadata
            )
        assert error_info(caught.value).reason == "AGENT_NOT_FOUND"
        assert (
            await stub.GetAgent(pb.GetAgentRequest(name=agent.name), metadata=owner.metadata)
        ).name == agent.name
