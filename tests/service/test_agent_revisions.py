"""Agent revisions (AIP-162) over real gRPC: made by updates, recorded and pinned by runs, kept on delete."""

from __future__ import annotations

import re

import grpc
import pytest
from google.protobuf import field_mask_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from tests.conftest import Mesh
from tests.service.helpers import error_info, field_violations, new_tenant, run_to_end

# The first revision calls a tool, and must; the second has none: a run shows which it ran.
FIRST = res.Agent(
    instructions="You plan truck routes. Use the route_distance tool, then answer in one sentence.",
    tools=["tools/route_distance"],
    tool_choice=res.TOOL_CHOICE_REQUIRED,
    temperature=0,
    max_output_tokens=32,
)


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def test_updates_make_revisions_that_runs_record_and_pin(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    md = tenant.metadata
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        first = await stub.CreateAgent(
            pb.CreateAgentRequest(parent=tenant.name, agent=FIRST, agent_id="planner"), metadata=md
        )
        assert re.fullmatch("[0-9a-f]{8}", first.revision_id)
        first_revision = f"{first.name}/revisions/{first.revision_id}"

        # No tools any more: one revision more; the mask leaves every other field alone.
        second = await stub.UpdateAgent(
            pb.UpdateAgentRequest(
                agent=res.Agent(name=first.name, instructions="Answer in one word.", tools=[]),
                update_mask=_mask("tools", "tool_choice"),
            ),
            metadata=md,
        )
        assert second.revision_id != first.revision_id
        assert second.instructions == FIRST.instructions and not second.tools
        assert second.tool_choice == res.TOOL_CHOICE_AUTO
        fetched = await stub.GetAgent(pb.GetAgentRequest(name=first.name), metadata=md)
        assert fetched.revision_id == second.revision_id

        # An update that changes nothing makes no revision; a bad one writes nothing.
        same = await stub.UpdateAgent(
            pb.UpdateAgentRequest(agent=second, update_mask=_mask("instructions", "create_time")), metadata=md
        )
        assert same.revision_id == second.revision_id
        for request, field in (
            (
                pb.UpdateAgentRequest(agent=res.Agent(name=first.name), update_mask=_mask("owner")),
                "update_mask",
            ),
            (
                pb.UpdateAgentRequest(agent=res.Agent(name=first.name), update_mask=_mask("instructions")),
                "agent.instructions",
            ),
            (
                pb.UpdateAgentRequest(
                    agent=res.Agent(name=first.name, tool_choice=res.TOOL_CHOICE_REQUIRED),
                    update_mask=_mask("tool_choice"),
                ),
                "agent.tool_choice",
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.UpdateAgent(request, metadata=md)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field_violations(caught.value) == [field]

        listed = await stub.ListAgentRevisions(pb.ListAgentRevisionsRequest(parent=first.name), metadata=md)
        assert [r.snapshot.revision_id for r in listed.agent_revisions] == [
            second.revision_id,
            first.revision_id,
        ]
        old = await stub.GetAgentRevision(pb.GetAgentRevisionRequest(name=first_revision), metadata=md)
        assert old.name == first_revision and old.snapshot.name == first.name
        assert list(old.snapshot.tools) == ["tools/route_distance"]
        assert old.snapshot.tool_choice == res.TOOL_CHOICE_REQUIRED

        # A run uses the current revision, or the one it pins.
        current = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=first.name, run=res.Run(input="Rotterdam to Berlin?")),
            metadata=md,
        )
        assert current.agent_revision == f"{first.name}/revisions/{second.revision_id}"
        assert not current.tools_enabled and not current.tool_calls
        pinned = await run_to_end(
            stub,
            pb.CreateRunRequest(
                parent=first.name, run=res.Run(input="Rotterdam to Berlin?"), agent_revision=first_revision
            ),
            metadata=md,
        )
        assert pinned.state == res.Run.STATE_SUCCEEDED, pinned.error
        assert pinned.agent_revision == first_revision
        assert pinned.tools_enabled and pinned.tool_calls[0].tool == "tools/route_distance"

        other = await stub.CreateAgent(
            pb.CreateAgentRequest(parent=tenant.name, agent=FIRST, agent_id="other"), metadata=md
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_to_end(
                stub,
                pb.CreateRunRequest(
                    parent=first.name,
                    run=res.Run(input="x"),
                    agent_revision=f"{other.name}/revisions/{other.revision_id}",
                ),
                metadata=md,
            )
        assert field_violations(caught.value) == ["agent_revision"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run_to_end(
                stub,
                pb.CreateRunRequest(
                    parent=first.name,
                    run=res.Run(input="x"),
                    agent_revision=f"{first.name}/revisions/0000abcd",
                ),
                metadata=md,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(caught.value).reason == "AGENT_REVISION_NOT_FOUND"


async def test_a_deleted_agent_keeps_its_runs_and_revisions_readable(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    md = tenant.metadata
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(
                parent=tenant.name,
                agent_id="gone",
                agent=res.Agent(instructions="Answer in one word.", max_output_tokens=8),
            ),
            metadata=md,
        )
        run = await run_to_end(
            stub, pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Hello?")), metadata=md
        )
        await stub.DeleteAgent(pb.DeleteAgentRequest(name=agent.name), metadata=md)

        for call in (
            stub.GetAgent(pb.GetAgentRequest(name=agent.name), metadata=md),
            stub.DeleteAgent(pb.DeleteAgentRequest(name=agent.name), metadata=md),
            stub.UpdateAgent(
                pb.UpdateAgentRequest(agent=res.Agent(name=agent.name, display_name="x")), metadata=md
            ),
            stub.CreateRun(pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Again?")), metadata=md),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert error_info(caught.value).reason == "AGENT_NOT_FOUND"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateAgent(
                pb.CreateAgentRequest(parent=tenant.name, agent_id="gone", agent=res.Agent(instructions="y")),
                metadata=md,
            )
        assert error_info(caught.value).reason == "AGENT_ALREADY_EXISTS"
        listed = await stub.ListAgents(pb.ListAgentsRequest(parent=tenant.name), metadata=md)
        assert not listed.agents

        fetched = await stub.GetRun(pb.GetRunRequest(name=run.name), metadata=md)
        assert fetched.output == run.output and fetched.agent_revision == run.agent_revision
        runs = await stub.ListRuns(pb.ListRunsRequest(parent=agent.name), metadata=md)
        assert [r.name for r in runs.runs] == [run.name]
        revision = await stub.GetAgentRevision(
            pb.GetAgentRevisionRequest(name=run.agent_revision), metadata=md
        )
        assert revision.snapshot.instructions == "Answer in one word."
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListRuns(pb.ListRunsRequest(parent=f"{tenant.name}/agents/never"), metadata=md)
        assert error_info(caught.value).reason == "AGENT_NOT_FOUND"
