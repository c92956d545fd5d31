"""Workflow service: definitions are checked, runs are durable graphs on the engine."""

from __future__ import annotations

import asyncio
import json

import grpc
import jwt
import pytest
from google.protobuf import duration_pb2, struct_pb2

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as pb_grpc
from services.kit.server import start
from services.workflow.server import build as build_workflow
from tests.conftest import Mesh
from tests.service.helpers import Tenant, field_violations, new_tenant

W = res.Workflow
Step = W.Step
ENDED = (res.RUN_STATE_SUCCEEDED, res.RUN_STATE_FAILED, res.RUN_STATE_CANCELLED)


def agent_step(step_id: str, agent: str, template: str = "", **fields: object) -> res.Workflow.Step:
    return Step(id=step_id, agent_run=W.AgentRun(agent=agent, input_template=template), **fields)  # type: ignore[arg-type]


def note(step_id: str, message: str, **fields: object) -> res.Workflow.Step:
    return Step(id=step_id, notification=W.Notification(channel="ops", message_template=message), **fields)  # type: ignore[arg-type]


async def echo_agent(mesh: Mesh, tenant: Tenant, agent_id: str = "echo") -> str:
    async with mesh.channel("agent") as channel:
        await agent_grpc.AgentServiceStub(channel).CreateAgent(
            agent_pb.CreateAgentRequest(
                parent=tenant.name,
                agent_id=agent_id,
                agent=agent_res.Agent(
                    instructions="Answer in one short sentence.", max_output_tokens=16, temperature=0
                ),
            ),
            metadata=tenant.metadata,
        )
    return f"{tenant.name}/agents/{agent_id}"


async def wait_for(
    stub: pb_grpc.WorkflowServiceStub, name: str, tenant: Tenant, states: tuple[int, ...] = ENDED
) -> res.WorkflowRun:
    """Asks for the run until it is in one of ``states`` (at most 60 s)."""
    for _ in range(600):
        run = await stub.GetWorkflowRun(pb.GetWorkflowRunRequest(name=name), metadata=tenant.metadata)
        if run.state in states:
            return run
        await asyncio.sleep(0.1)
    history = await events_of(stub, name, tenant)
    raise AssertionError(f"{name} stayed {res.RunState.Name(run.state)}: {history}")


async def events_of(stub: pb_grpc.WorkflowServiceStub, name: str, tenant: Tenant) -> list[tuple[str, str]]:
    listed = await stub.ListWorkflowRunEvents(
        pb.ListWorkflowRunEventsRequest(parent=name, page_size=1000), metadata=tenant.metadata
    )
    return [(e.type.removeprefix("dev.orchestrall.workflow."), e.step_id) for e in listed.events]


async def test_two_step_workflow_chains_outputs(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    echo = await echo_agent(mesh, tenant)
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        workflow = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(
                parent=tenant.name,
                workflow_id="chain",
                workflow=W(
                    steps=[
                        agent_step("a", echo),
                        agent_step("b", echo, "Shorten: {{ steps.a.output }}", depends_on=["a"]),
                    ]
                ),
            ),
            metadata=tenant.metadata,
        )
        assert workflow.revision_id == "1"
        run = await stub.CreateWorkflowRun(
            pb.CreateWorkflowRunRequest(
                parent=workflow.name, workflow_run=res.WorkflowRun(input="Name a port city.")
            ),
            metadata=tenant.metadata,
        )
        run = await wait_for(stub, run.name, tenant)
        history = await events_of(stub, run.name, tenant)
    assert run.state == res.RUN_STATE_SUCCEEDED, run.error
    first, second = run.steps
    assert first.input == "Name a port city."
    assert second.input == f"Shorten: {json.loads(first.output)}"
    assert first.agent_run.startswith(f"{echo}/runs/")
    assert run.output == json.loads(second.output)
    assert history == [
        ("run.started", ""),
        ("step.scheduled", "a"),
        ("step.started", "a"),
        ("step.succeeded", "a"),
        ("step.scheduled", "b"),
        ("step.started", "b"),
        ("step.succeeded", "b"),
        ("run.succeeded", ""),
    ]


def branching_workflow(echo: str) -> res.Workflow:
    """check -> (big: approve -> book | small: note) -> parallel notes -> done; book compensates."""
    return W(
        steps=[
            Step(
                id="check",
                condition=W.Condition(
                    expression="input_json.amount > 100", then_steps=["approve"], else_steps=["small"]
                ),
            ),
            Step(
                id="approve",
                depends_on=["check"],
                approval=W.Approval(prompt_template="Approve {{ input_json.amount }}?"),
            ),
            note("small", "small order", depends_on=["check"]),
            note(
                "book",
                "booked {{ input_json.amount }}",
                depends_on=["approve"],
                compensation=W.Compensation(
                    notification=W.Notification(channel="ops", message_template="undo: {{ output }}")
                ),
            ),
            note("left", "left", depends_on=["book", "small"]),
            note("right", "right", depends_on=["book", "small"]),
            agent_step("done", echo, "Say done.", depends_on=["left", "right"]),
        ]
    )


async def test_a_graph_branches_runs_in_parallel_waits_for_approval_and_compensates(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    echo = await echo_agent(mesh, tenant)
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        workflow = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(
                parent=tenant.name, workflow_id="orders", workflow=branching_workflow(echo)
            ),
            metadata=tenant.metadata,
        )

        async def start(amount: int) -> res.WorkflowRun:
            return await stub.CreateWorkflowRun(
                pb.CreateWorkflowRunRequest(
                    parent=workflow.name, workflow_run=res.WorkflowRun(input=json.dumps({"amount": amount}))
                ),
                metadata=tenant.metadata,
            )

        small = await wait_for(stub, (await start(5)).name, tenant)
        big = await wait_for(stub, (await start(500)).name, tenant, (res.RUN_STATE_WAITING,))
        approval = struct_pb2.Struct()
        approval.update({"approved": True, "comment": "fine", "decided_by": "mallory"})
        for _ in range(2):  # a retried signal delivers nothing new
            await stub.SignalWorkflowRun(
                pb.SignalWorkflowRunRequest(
                    name=big.name, signal_name="approve", payload=approval, request_id="ok-1"
                ),
                metadata=tenant.metadata,
            )
        big = await wait_for(stub, big.name, tenant)
        rejected = await wait_for(stub, (await start(900)).name, tenant, (res.RUN_STATE_WAITING,))
        approval.update({"approved": False, "comment": "too much"})
        await stub.SignalWorkflowRun(
            pb.SignalWorkflowRunRequest(name=rejected.name, signal_name="approve", payload=approval),
            metadata=tenant.metadata,
        )
        rejected = await wait_for(stub, rejected.name, tenant)
        big_history = await events_of(stub, big.name, tenant)
        graph = await stub.GetWorkflowRunGraph(
            pb.GetWorkflowRunGraphRequest(name=small.name), metadata=tenant.metadata
        )

    def states(run: res.WorkflowRun) -> dict[str, str]:
        return {s.step_id: res.RunState.Name(s.state).removeprefix("RUN_STATE_") for s in run.steps}

    assert small.state == res.RUN_STATE_SUCCEEDED, small.error
    assert states(small) == {
        "check": "SUCCEEDED",
        "approve": "SKIPPED",
        "small": "SUCCEEDED",
        "book": "SKIPPED",
        "left": "SUCCEEDED",
        "right": "SUCCEEDED",
        "done": "SUCCEEDED",
    }
    assert big.state == res.RUN_STATE_SUCCEEDED, big.error
    assert states(big)["small"] == "SKIPPED" and states(big)["book"] == "SUCCEEDED"
    decision = json.loads(next(s for s in big.steps if s.step_id == "approve").output)
    subject = jwt.decode(tenant.token, options={"verify_signature": False})["sub"]
    assert (decision["comment"], decision["decided_by"]) == ("fine", subject)  # not what the payload claimed
    assert big_history.count(("signal.received", "approve")) == 1  # delivered twice, one request ID
    assert big_history.count(("approval.given", "approve")) == 1
    # The rejection fails the run; nothing succeeded that compensates (book never ran).
    assert rejected.state == res.RUN_STATE_FAILED
    assert rejected.error.details[0].value.decode(errors="ignore").count("APPROVAL_REJECTED") == 1
    assert 'check{"condition: check<br/>SUCCEEDED"}:::succeeded' in graph.mermaid
    assert "check -->|false| small" in graph.mermaid


async def test_a_failed_run_compensates_its_succeeded_steps_in_reverse_order(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    undo = W.Compensation(notification=W.Notification(channel="ops", message_template="undo {{ output }}"))
    steps = [
        note("reserve", "reserved", compensation=undo),
        note("charge", "charged", depends_on=["reserve"], compensation=undo),
        Step(id="ship", depends_on=["charge"], condition=W.Condition(expression="input_json.missing")),
    ]
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        workflow = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(parent=tenant.name, workflow_id="saga", workflow=W(steps=steps)),
            metadata=tenant.metadata,
        )
        run = await stub.CreateWorkflowRun(
            pb.CreateWorkflowRunRequest(parent=workflow.name, workflow_run=res.WorkflowRun(input="{}")),
            metadata=tenant.metadata,
        )
        run = await wait_for(stub, run.name, tenant)
        history = await events_of(stub, run.name, tenant)
    assert run.state == res.RUN_STATE_FAILED
    assert [s.compensated for s in run.steps] == [True, True, False]
    compensations = [e for e in history if e[0].startswith("compensation.")]
    assert compensations == [
        ("compensation.started", "charge"),
        ("compensation.succeeded", "charge"),
        ("compensation.started", "reserve"),
        ("compensation.succeeded", "reserve"),
    ]
    assert history[-1] == ("run.failed", "")


async def test_cancelling_a_waiting_run_stops_it_and_compensates(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    undo = W.Compensation(notification=W.Notification(channel="ops", message_template="undo"))
    steps = [
        note("first", "done", compensation=undo),
        Step(id="hold", depends_on=["first"], wait=W.Wait(duration=duration_pb2.Duration(seconds=3600))),
    ]
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        workflow = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(parent=tenant.name, workflow_id="long", workflow=W(steps=steps)),
            metadata=tenant.metadata,
        )
        run = await stub.CreateWorkflowRun(
            pb.CreateWorkflowRunRequest(parent=workflow.name, workflow_run=res.WorkflowRun(input="go")),
            metadata=tenant.metadata,
        )
        for _ in range(200):
            if ("timer.started", "hold") in await events_of(stub, run.name, tenant):
                break
            await asyncio.sleep(0.05)
        await stub.CancelWorkflowRun(pb.CancelWorkflowRunRequest(name=run.name), metadata=tenant.metadata)
        run = await wait_for(stub, run.name, tenant)
        history = await events_of(stub, run.name, tenant)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SignalWorkflowRun(
                pb.SignalWorkflowRunRequest(name=run.name, signal_name="hold"), metadata=tenant.metadata
            )
    assert run.state == res.RUN_STATE_CANCELLED
    assert [s.state for s in run.steps] == [res.RUN_STATE_SUCCEEDED, res.RUN_STATE_CANCELLED]
    assert ("compensation.succeeded", "first") in history
    assert history[-1] == ("run.cancelled", "")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_bad_definitions_name_each_bad_field(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    echo = await echo_agent(mesh, tenant)
    cases = {
        "cycle": (
            [agent_step("a", echo, depends_on=["b"]), agent_step("b", echo, depends_on=["a"])],
            ["workflow.steps[0].depends_on", "workflow.steps[1].depends_on"],
        ),
        "references": (
            [
                agent_step("a", echo, "{{ steps.b.output }}"),
                agent_step("b", echo, depends_on=["nope"]),
            ],
            ["workflow.steps[1].depends_on[0]"],
        ),
        "templates": (
            [agent_step("a", echo, "{{ steps.b.output }}"), agent_step("b", echo, "{{ nope }}")],
            ["workflow.steps[0].agent_run.input_template", "workflow.steps[1].agent_run.input_template"],
        ),
        "types": (
            [
                agent_step("a", echo),
                Step(id="c", depends_on=["a"], condition=W.Condition(expression="steps.a.output + 1 > 2")),
                Step(id="d", depends_on=["a"], condition=W.Condition(expression="steps.a.output")),
                Step(id="e", condition=W.Condition(expression="input >", else_steps=["a"])),
            ],
            [
                "workflow.steps[1].condition.expression",
                "workflow.steps[2].condition.expression",
                "workflow.steps[3].condition.expression",
                "workflow.steps[3].condition.else_steps[0]",
            ],
        ),
        "peers": (
            [
                agent_step("a", f"{tenant.name}/agents/missing"),
                Step(id="s", sub_workflow=W.SubWorkflow(workflow=f"{tenant.name}/workflows/peers")),
            ],
            ["workflow.steps[1].sub_workflow.workflow"],
        ),
    }
    found = {}
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        for workflow_id, (steps, _) in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateWorkflow(
                    pb.CreateWorkflowRequest(
                        parent=tenant.name, workflow_id=workflow_id, workflow=W(steps=steps)
                    ),
                    metadata=tenant.metadata,
                )
            found[workflow_id] = field_violations(caught.value)
    assert found == {workflow_id: paths for workflow_id, (_, paths) in cases.items()}


async def test_an_update_makes_a_revision_and_runs_keep_theirs(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        workflow = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(
                parent=tenant.name, workflow_id="notes", workflow=W(steps=[note("n", "one")])
            ),
            metadata=tenant.metadata,
        )
        first = await stub.CreateWorkflowRun(
            pb.CreateWorkflowRunRequest(parent=workflow.name, workflow_run=res.WorkflowRun(input="x")),
            metadata=tenant.metadata,
        )
        updated = await stub.UpdateWorkflow(
            pb.UpdateWorkflowRequest(workflow=W(name=workflow.name, steps=[note("n", "two")])),
            metadata=tenant.metadata,
        )
        unchanged = await stub.UpdateWorkflow(
            pb.UpdateWorkflowRequest(workflow=W(name=workflow.name, steps=[note("n", "two")])),
            metadata=tenant.metadata,
        )
        second = await stub.CreateWorkflowRun(
            pb.CreateWorkflowRunRequest(parent=workflow.name, workflow_run=res.WorkflowRun(input="x")),
            metadata=tenant.metadata,
        )
        first, second = [await wait_for(stub, r.name, tenant) for r in (first, second)]
        revisions = await stub.ListWorkflowRevisions(
            pb.ListWorkflowRevisionsRequest(name=workflow.name), metadata=tenant.metadata
        )
    assert (updated.revision_id, unchanged.revision_id) == ("2", "2")
    assert [w.revision_id for w in revisions.workflows] == ["2", "1"]
    assert (first.revision_id, first.output) == ("1", "one")
    assert (second.revision_id, second.output) == ("2", "two")


async def test_a_run_goes_on_after_the_service_restarts(mesh: Mesh) -> None:
    """A run in a durable wait when its service stops finishes after the next start, doing no step twice."""
    tenant = await new_tenant(mesh)
    steps = [
        note("before", "once"),
        Step(id="pause", depends_on=["before"], wait=W.Wait(duration=duration_pb2.Duration(seconds=2))),
        note("after", "then", depends_on=["pause"]),
    ]
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        workflow = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(parent=tenant.name, workflow_id="restart", workflow=W(steps=steps)),
            metadata=tenant.metadata,
        )
        run = await stub.CreateWorkflowRun(
            pb.CreateWorkflowRunRequest(parent=workflow.name, workflow_run=res.WorkflowRun(input="x")),
            metadata=tenant.metadata,
        )
        for _ in range(200):
            if ("timer.started", "pause") in await events_of(stub, run.name, tenant):
                break
            await asyncio.sleep(0.05)
    old = mesh.servers["workflow"]
    await old.stop(0)
    settings = mesh.config.settings("workflow").model_copy(
        update={"tls_dir": mesh.tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
    )
    mesh.servers["workflow"] = await start(*(await build_workflow(settings)))
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        run = await wait_for(stub, run.name, tenant)
        history = await events_of(stub, run.name, tenant)
    assert run.state == res.RUN_STATE_SUCCEEDED, run.error
    assert history.count(("notification.sent", "before")) == 1
    assert history.count(("timer.fired", "pause")) == 1
