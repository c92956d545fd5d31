"""Runs in the background: streamed events, resuming a stream, waiting, cancelling, approvals.

Through the real gRPC server with the real model server (SmolLM2 from its wheel).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import text

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from orchestrall.billing.v1 import billing_service_pb2 as billing_pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as billing_grpc
from orchestrall.billing.v1 import resources_pb2 as billing_res
from services.agent.runner import MAX_TOOL_ROUNDS
from services.agent.tools import route_distance
from services.billing.plans import FREE_LIMITS
from services.kit.db import Database
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_replica,
    error_info,
    extra_tool,
    field_violations,
    hub_tool,
    new_tenant,
    run_to_end,
)
from tests.service.test_agent import PLANNER, usage

APPROVE = res.ToolApproval.DECISION_APPROVE
REJECT = res.ToolApproval.DECISION_REJECT
GUARDED = res.Agent(
    instructions=PLANNER.instructions,
    tools=PLANNER.tools,
    tool_choice=res.TOOL_CHOICE_REQUIRED,
    temperature=0,
    max_output_tokens=48,
    approval_required_tools=["tools/route_distance"],
)
STORYTELLER = res.Agent(
    instructions="You write long, detailed stories.", temperature=0.8, max_output_tokens=2048
)


async def _create(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, agent: res.Agent, agent_id: str
) -> res.Agent:
    return await stub.CreateAgent(
        pb.CreateAgentRequest(parent=tenant.name, agent=agent, agent_id=agent_id), metadata=tenant.metadata
    )


async def _events(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, run: str, after: int = 0
) -> list[res.RunEvent]:
    stream = stub.StreamRunEvents(
        pb.StreamRunEventsRequest(name=run, after_sequence=after), metadata=tenant.metadata
    )
    return [event async for event in stream]


def _kinds(events: list[res.RunEvent]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


async def test_a_run_starts_at_once_and_its_stream_tells_every_step_and_resumes_exactly(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, PLANNER, "planner")
        run = await stub.CreateRun(
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Distance from Rotterdam to Berlin?")),
            metadata=tenant.metadata,
        )
        assert run.state == res.Run.STATE_RUNNING and not run.output
        events = await _events(stub, tenant, run.name)
        finished = await stub.GetRun(pb.GetRunRequest(name=run.name), metadata=tenant.metadata)
        replayed = await _events(stub, tenant, run.name)
        resumed = await _events(stub, tenant, run.name, after=3)
        after_end = await _events(stub, tenant, run.name, after=events[-1].sequence)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    kinds = _kinds(events)
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds[1:4] == ["model_call", "tool_call_started", "tool_call_finished"], kinds
    assert events[0].run_started.agent_revision == f"{agent.name}/revisions/{agent.revision_id}"
    call = events[3].tool_call_finished
    assert call.tool == "tools/route_distance" and json.loads(call.result) == route_distance(
        json.loads(call.arguments)
    )
    assert events[1].model_call.tool_calls[0].arguments == call.arguments
    # The reply was streamed: its deltas, in order, are the final reply.
    last_call = max(i for i, kind in enumerate(kinds) if kind == "tool_call_finished")
    deltas = [e.text_delta.text for e in events[last_call:] if e.WhichOneof("event") == "text_delta"]
    assert len(deltas) > 1 and "".join(deltas).strip() == finished.output
    assert kinds[-2] == "model_call" and events[-2].model_call.content.strip() == finished.output
    model_calls = [e.model_call for e in events if e.WhichOneof("event") == "model_call"]
    assert sum(m.output_tokens for m in model_calls) == finished.usage.output_tokens
    assert all(m.model == "smollm2" and m.latency.ToTimedelta().total_seconds() > 0 for m in model_calls)
    assert events[-1].run_finished == finished and finished.state == res.Run.STATE_SUCCEEDED
    # Stored, the same events come back: whole, or after the last one a client saw.
    assert replayed == events
    assert resumed == events[3:]
    assert after_end == []


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """A tool that holds its run until the test opens the gate."""
    opened = threading.Event()
    with extra_tool(hub_tool("gated_hub", lambda args: opened.wait(60) and {"hub": args["hub"]})):
        try:
            yield opened
        finally:
            opened.set()


GATED = res.Agent(
    instructions="Call the tool, then answer in one sentence.",
    tools=["tools/gated_hub"],
    tool_choice=res.TOOL_CHOICE_REQUIRED,
    temperature=0,
    max_output_tokens=16,
)


async def test_wait_run_returns_when_the_run_ends_or_its_timeout_passes(
    mesh: Mesh, gate: threading.Event
) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, GATED, "gated")
        run = await stub.CreateRun(
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam?")), metadata=tenant.metadata
        )
        started = time.monotonic()
        waited = await stub.WaitRun(
            pb.WaitRunRequest(name=run.name, timeout=Duration(nanos=300_000_000)), metadata=tenant.metadata
        )
        timed_out_after = time.monotonic() - started
        gate.set()
        ended = await stub.WaitRun(pb.WaitRunRequest(name=run.name), metadata=tenant.metadata)
    assert waited.state == res.Run.STATE_RUNNING and 0.3 <= timed_out_after < 2
    assert ended.state == res.Run.STATE_SUCCEEDED and ended.tool_calls[0].tool == "tools/gated_hub"


async def test_cancel_stops_a_run_in_its_model_call_within_a_second_and_meters_what_it_used(
    mesh: Mesh,
) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, STORYTELLER, "storyteller")
        run = await stub.CreateRun(
            pb.CreateRunRequest(
                parent=agent.name, run=res.Run(input="Tell a long story about a lighthouse.")
            ),
            metadata=tenant.metadata,
        )
        stream = stub.StreamRunEvents(pb.StreamRunEventsRequest(name=run.name), metadata=tenant.metadata)
        seen: list[res.RunEvent] = []
        async for event in stream:
            seen.append(event)
            if sum(e.WhichOneof("event") == "text_delta" for e in seen) == 5:
                break
        stream.cancel()
        started = time.monotonic()
        cancelled = await stub.CancelRun(pb.CancelRunRequest(name=run.name), metadata=tenant.metadata)
        rest = await _events(stub, tenant, run.name, after=seen[-1].sequence)
        stopped_after = time.monotonic() - started
        again = await stub.CancelRun(pb.CancelRunRequest(name=run.name), metadata=tenant.metadata)
        stored = await stub.GetRun(pb.GetRunRequest(name=run.name), metadata=tenant.metadata)
        replayed = await _replay(stub, tenant, run.name)
    assert replayed.identical, replayed.difference
    assert (
        cancelled.state == res.Run.STATE_CANCELLED
        and cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]
    )
    assert stopped_after < 1.0, "the stream ends as soon as the run is cancelled"
    assert rest[-1].run_finished.state == res.Run.STATE_CANCELLED
    assert again == cancelled and stored == cancelled, "cancelling an ended run changes nothing"
    metered = await usage(mesh, tenant)
    assert metered["agent_runs"] == 1 and metered["model_output_tokens"] >= 5


async def test_cancelling_an_ended_run_returns_it_unchanged(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, PLANNER, "planner")
        run = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Paris to Madrid?")),
            tenant.metadata,
        )
        cancelled = await stub.CancelRun(pb.CancelRunRequest(name=run.name), metadata=tenant.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CancelRun(
                pb.CancelRunRequest(name=f"{agent.name}/runs/nope"), metadata=tenant.metadata
            )
    assert run.state == res.Run.STATE_SUCCEEDED and cancelled == run
    assert error_info(caught.value).reason == "RUN_NOT_FOUND"


async def _pending(stub: pb_grpc.AgentServiceStub, tenant: Tenant, agent: res.Agent) -> res.Run:
    run = await run_to_end(
        stub,
        pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam to Berlin?")),
        tenant.metadata,
    )
    assert run.state == res.Run.STATE_REQUIRES_ACTION, run.error
    return run


async def test_an_approved_call_with_edited_arguments_is_made_and_the_run_goes_on(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, GUARDED, "guarded")
        assert list(agent.approval_required_tools) == ["tools/route_distance"]
        waiting = await _pending(stub, tenant, agent)
        (pending,) = waiting.pending_tool_calls
        first_part = await _events(stub, tenant, waiting.name)
        edited = json.dumps({"origin": "Hamburg", "destination": "Lyon"})
        approval = pb.SubmitToolApprovalsRequest(
            name=waiting.name,
            approvals=[res.ToolApproval(tool_call_id=pending.id, decision=APPROVE, arguments=edited)],
            request_id="decided-1",
        )
        resumed = await stub.SubmitToolApprovals(approval, metadata=tenant.metadata)
        retried = await stub.SubmitToolApprovals(approval, metadata=tenant.metadata)
        ended = await stub.WaitRun(pb.WaitRunRequest(name=waiting.name), metadata=tenant.metadata)
        rest = await _events(stub, tenant, waiting.name, after=first_part[-1].sequence)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitToolApprovals(
                pb.SubmitToolApprovalsRequest(
                    name=waiting.name, approvals=[res.ToolApproval(tool_call_id=pending.id, decision=APPROVE)]
                ),
                metadata=tenant.metadata,
            )
    assert pending.tool == "tools/route_distance" and not pending.result and not waiting.tool_calls
    assert _kinds(first_part) == ["run_started", "model_call", "requires_action"]
    assert first_part[-1].requires_action.tool_calls[0] == pending
    assert resumed.state == res.Run.STATE_RUNNING and not resumed.pending_tool_calls
    assert retried.name == resumed.name, "a retry of the same decision is no error"
    assert ended.state == res.Run.STATE_SUCCEEDED, ended.error
    (made,) = ended.tool_calls
    assert made.id == pending.id and made.arguments == edited and not made.failed
    assert json.loads(made.result) == route_distance(json.loads(edited))
    assert _kinds(rest)[:3] == ["run_started", "tool_call_started", "tool_call_finished"]
    assert rest[0].run_started.resumed and rest[-1].run_finished == ended
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "RUN_NOT_AWAITING_APPROVAL"


async def test_a_rejected_call_reaches_the_model_as_an_error_with_the_reason(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, GUARDED, "guarded")
        waiting = await _pending(stub, tenant, agent)
        await stub.SubmitToolApprovals(
            pb.SubmitToolApprovalsRequest(
                name=waiting.name,
                approvals=[
                    res.ToolApproval(
                        tool_call_id=waiting.pending_tool_calls[0].id, decision=REJECT, reason="route closed"
                    )
                ],
            ),
            metadata=tenant.metadata,
        )
        ended = await stub.WaitRun(pb.WaitRunRequest(name=waiting.name), metadata=tenant.metadata)
    assert ended.state == res.Run.STATE_SUCCEEDED
    (refused,) = ended.tool_calls
    assert refused.failed and "route closed" in json.loads(refused.result)["error"]


async def test_bad_decisions_get_field_violations_and_leave_the_run_waiting(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, GUARDED, "guarded")
        waiting = await _pending(stub, tenant, agent)
        call_id = waiting.pending_tool_calls[0].id
        cases = {
            "unknown call and none for the pending one": (
                [res.ToolApproval(tool_call_id="call_other", decision=APPROVE)],
                {"approvals[0].tool_call_id", "approvals"},
            ),
            "two decisions for one call": (
                [
                    res.ToolApproval(tool_call_id=call_id, decision=APPROVE),
                    res.ToolApproval(tool_call_id=call_id, decision=REJECT),
                ],
                {"approvals[1].tool_call_id"},
            ),
            "edited arguments on a rejection": (
                [res.ToolApproval(tool_call_id=call_id, decision=REJECT, arguments="{}")],
                {"approvals[0].arguments"},
            ),
            "arguments that are not an object": (
                [res.ToolApproval(tool_call_id=call_id, decision=APPROVE, arguments="[1]")],
                {"approvals[0].arguments"},
            ),
            "no decision": ([res.ToolApproval(tool_call_id=call_id)], {"approvals[0].decision"}),
        }
        for case, (approvals, fields) in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.SubmitToolApprovals(
                    pb.SubmitToolApprovalsRequest(name=waiting.name, approvals=approvals),
                    metadata=tenant.metadata,
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
            assert set(field_violations(caught.value)) == fields, case
        still = await stub.GetRun(pb.GetRunRequest(name=waiting.name), metadata=tenant.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as bad_agent:
            await _create(
                stub,
                tenant,
                res.Agent(instructions="x", approval_required_tools=["tools/route_distance"]),
                "a",
            )
    assert still == waiting
    assert set(field_violations(bad_agent.value)) == {"agent.approval_required_tools[0]"}


async def test_a_waiting_run_survives_its_replica_and_resumes_on_another(mesh: Mesh, model_url: str) -> None:
    tenant = await new_tenant(mesh)
    replica = await agent_replica(mesh, model_url)
    try:
        async with agent_channel(mesh, replica) as channel:
            stub = pb_grpc.AgentServiceStub(channel)
            agent = await _create(stub, tenant, GUARDED, "guarded")
            waiting = await _pending(stub, tenant, agent)
    finally:
        await replica.stop(0)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        still = await stub.GetRun(pb.GetRunRequest(name=waiting.name), metadata=tenant.metadata)
        await stub.SubmitToolApprovals(
            pb.SubmitToolApprovalsRequest(
                name=waiting.name,
                approvals=[res.ToolApproval(tool_call_id=waiting.pending_tool_calls[0].id, decision=APPROVE)],
            ),
            metadata=tenant.metadata,
        )
        ended = await stub.WaitRun(pb.WaitRunRequest(name=waiting.name), metadata=tenant.metadata)
    assert still.state == res.Run.STATE_REQUIRES_ACTION
    assert ended.state == res.Run.STATE_SUCCEEDED and not ended.tool_calls[0].failed


async def test_a_waiting_run_can_be_cancelled(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, GUARDED, "guarded")
        waiting = await _pending(stub, tenant, agent)
        cancelled = await stub.CancelRun(pb.CancelRunRequest(name=waiting.name), metadata=tenant.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitToolApprovals(
                pb.SubmitToolApprovalsRequest(
                    name=waiting.name,
                    approvals=[
                        res.ToolApproval(tool_call_id=waiting.pending_tool_calls[0].id, decision=APPROVE)
                    ],
                ),
                metadata=tenant.metadata,
            )
    assert cancelled.state == res.Run.STATE_CANCELLED and not cancelled.pending_tool_calls
    assert error_info(caught.value).reason == "RUN_NOT_AWAITING_APPROVAL"


async def test_a_run_executing_on_another_replica_is_followed_from_its_stored_events(
    mesh: Mesh, model_url: str, gate: threading.Event
) -> None:
    tenant = await new_tenant(mesh)
    replica = await agent_replica(mesh, model_url)
    try:
        async with agent_channel(mesh, replica) as there, mesh.channel("agent") as here:
            executing = pb_grpc.AgentServiceStub(there)
            agent = await _create(executing, tenant, GATED, "gated")
            run = await executing.CreateRun(
                pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Rotterdam?")),
                metadata=tenant.metadata,
            )
            following = pb_grpc.AgentServiceStub(here)
            stream = following.StreamRunEvents(
                pb.StreamRunEventsRequest(name=run.name), metadata=tenant.metadata
            )
            first = await stream.read()
            assert isinstance(first, res.RunEvent)
            gate.set()
            followed = [first]
            while (event := await stream.read()) is not grpc.aio.EOF:
                followed.append(event)
            direct = await _events(executing, tenant, run.name)
    finally:
        await replica.stop(0)
    assert followed == direct
    assert _kinds(followed)[0] == "run_started" and followed[-1].run_finished.state == res.Run.STATE_SUCCEEDED


async def test_a_parallel_burst_of_runs_never_overshoots_the_output_token_quota(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    brief = res.Agent(instructions="Answer in a few words.", temperature=0, max_output_tokens=16)
    hold = brief.max_output_tokens * (MAX_TOOL_ROUNDS + 1)  # the most one run's model calls may write
    limit = FREE_LIMITS["model_output_tokens"]
    spent = limit - 3 * hold - hold // 2  # room for three runs' holds, not four
    async with mesh.channel("billing", identity="agent") as channel:
        await billing_grpc.BillingServiceStub(channel).IngestUsageEvents(
            billing_pb.IngestUsageEventsRequest(
                events=[
                    billing_res.UsageEvent(
                        id="earlier",
                        source="//test",
                        tenant=tenant.name,
                        meter="model_output_tokens",
                        quantity=spent,
                    )
                ]
            )
        )
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        agent = await _create(stub, tenant, brief, "brief")
        burst = await asyncio.gather(
            *(
                stub.CreateRun(
                    pb.CreateRunRequest(parent=agent.name, run=res.Run(input=f"Name a port, {i}.")),
                    metadata=tenant.metadata,
                )
                for i in range(8)
            ),
            return_exceptions=True,
        )
        admitted = [r for r in burst if isinstance(r, res.Run)]
        refused = [e for e in burst if isinstance(e, grpc.aio.AioRpcError)]
        ended = [
            await stub.WaitRun(pb.WaitRunRequest(name=r.name), metadata=tenant.metadata) for r in admitted
        ]
    assert len(admitted) == 3 and len(refused) == 5
    assert {error_info(e).reason for e in refused} == {"QUOTA_EXCEEDED"}
    assert all(r.state == res.Run.STATE_SUCCEEDED for r in ended)
    metered = await usage(mesh, tenant)
    assert metered["model_output_tokens"] == spent + sum(r.usage.output_tokens for r in ended) <= limit


async def _replay(stub: pb_grpc.AgentServiceStub, tenant: Tenant, run: str) -> pb.ReplayRunResponse:
    return await stub.ReplayRun(pb.ReplayRunRequest(name=run), metadata=tenant.metadata)


async def test_runs_replay_without_the_model_to_the_same_events_and_a_changed_record_shows(
    mesh: Mesh, agent_db: Database
) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        planner = await _create(stub, tenant, PLANNER, "planner")
        plain = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=planner.name, run=res.Run(input="Lyon to Milan?")),
            tenant.metadata,
        )
        guarded = await _create(stub, tenant, GUARDED, "guarded")
        decided = []
        for decision in (
            res.ToolApproval(
                decision=APPROVE, arguments=json.dumps({"origin": "Warsaw", "destination": "Vienna"})
            ),
            res.ToolApproval(decision=REJECT, reason="not today"),
        ):
            waiting = await _pending(stub, tenant, guarded)
            decision.tool_call_id = waiting.pending_tool_calls[0].id
            await stub.SubmitToolApprovals(
                pb.SubmitToolApprovalsRequest(name=waiting.name, approvals=[decision]),
                metadata=tenant.metadata,
            )
            decided.append(await stub.WaitRun(pb.WaitRunRequest(name=waiting.name), metadata=tenant.metadata))
        still_waiting = await _pending(stub, tenant, guarded)
        replays = {
            run.name: await _replay(stub, tenant, run.name) for run in (plain, *decided, still_waiting)
        }
        recorded = await _events(stub, tenant, plain.name)
        await agent_db.write(
            tenant.id,
            lambda tx: tx.execute(
                text("UPDATE runs SET output = 'something else' WHERE id = :id"),
                {"id": plain.name.rsplit("/", 1)[1]},
            ),
        )
        tampered = await _replay(stub, tenant, plain.name)
    for name, replayed in replays.items():
        assert replayed.identical, (name, replayed.difference)
    assert _kinds(list(replays[plain.name].events)) == _kinds(recorded)
    deltas = [e.text_delta.text for e in recorded if e.WhichOneof("event") == "text_delta"]
    assert [
        e.text_delta.text for e in replays[plain.name].events if e.WhichOneof("event") == "text_delta"
    ] == deltas
    assert replays[plain.name].events[-1].run_finished.output == plain.output
    assert _kinds(list(replays[still_waiting.name].events))[-1] == "requires_action"
    assert not tampered.identical and "run_finished" in tampered.difference
