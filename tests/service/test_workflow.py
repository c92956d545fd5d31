"""Workflow service: definitions are checked, runs chain agent calls durably."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as pb_grpc
from services.kit.db import Database, create_engine
from services.kit.server import start
from services.kit.timestamps import utcnow
from services.workflow.models import RunState, WorkflowRunRow
from services.workflow.server import build as build_workflow
from services.workflow.store import RUNS
from tests.conftest import Mesh
from tests.service.helpers import field_violations, new_tenant

Step = res.Workflow.Step


async def test_two_step_workflow_chains_outputs(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        agents = agent_grpc.AgentServiceStub(channel)
        for agent_id in ("first", "second"):
            await agents.CreateAgent(
                agent_pb.CreateAgentRequest(
                    parent=tenant.name,
                    agent_id=agent_id,
                    agent=agent_res.Agent(
                        instructions="Answer in one short sentence.", max_output_tokens=24, temperature=0
                    ),
                ),
                metadata=tenant.metadata,
            )
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        workflow = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(
                parent=tenant.name,
                workflow_id="chain",
                workflow=res.Workflow(
                    steps=[
                        Step(id="a", agent=f"{tenant.name}/agents/first"),
                        Step(
                            id="b",
                            agent=f"{tenant.name}/agents/second",
                            input_template="Shorten: {{ steps.a.output }}",
                        ),
                    ]
                ),
            ),
            metadata=tenant.metadata,
        )
        run = await stub.CreateWorkflowRun(
            pb.CreateWorkflowRunRequest(
                parent=workflow.name, workflow_run=res.WorkflowRun(input="Name a port city.")
            ),
            metadata=tenant.metadata,
        )
        for _ in range(600):
            run = await stub.GetWorkflowRun(pb.GetWorkflowRunRequest(name=run.name), metadata=tenant.metadata)
            if run.state not in (res.RUN_STATE_PENDING, res.RUN_STATE_RUNNING):
                break
            await asyncio.sleep(0.2)
    assert run.state == res.RUN_STATE_SUCCEEDED, run.error
    first, second = run.steps
    assert first.input == "Name a port city."
    assert second.input == f"Shorten: {first.output}"
    assert first.agent_run.startswith(f"{tenant.name}/agents/first/runs/")
    assert run.output == second.output


async def test_bad_definitions_name_each_bad_field(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    other = await new_tenant(mesh)
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateWorkflow(
                pb.CreateWorkflowRequest(
                    parent=tenant.name,
                    workflow=res.Workflow(
                        steps=[
                            Step(
                                id="a",
                                agent=f"{tenant.name}/agents/missing",
                                input_template="{{ steps.b.output }}",
                            ),
                            Step(id="b", agent=f"{other.name}/agents/x", input_template="{{ nope }}"),
                            Step(id="b", agent="agents/x", input_template="{% if %}"),
                        ]
                    ),
                ),
                metadata=tenant.metadata,
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Checks that need no peer come first; agents are looked up only for an otherwise valid workflow.
    assert set(field_violations(caught.value)) == {
        "workflow.steps[0].input_template",
        "workflow.steps[1].agent",
        "workflow.steps[1].input_template",
        "workflow.steps[2].id",
        "workflow.steps[2].agent",
        "workflow.steps[2].input_template",
    }
    async with mesh.channel("workflow") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.WorkflowServiceStub(channel).CreateWorkflow(
                pb.CreateWorkflowRequest(
                    parent=tenant.name,
                    workflow=res.Workflow(steps=[Step(id="a", agent=f"{tenant.name}/agents/missing")]),
                ),
                metadata=tenant.metadata,
            )
    assert field_violations(caught.value) == ["workflow.steps[0].agent"]


async def test_an_oversized_workflow_is_refused_before_any_agent_is_looked_up(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    steps = [Step(id=f"s{i}", agent=f"{tenant.name}/agents/missing") for i in range(5000)]
    async with mesh.channel("workflow") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.WorkflowServiceStub(channel).CreateWorkflow(
                pb.CreateWorkflowRequest(parent=tenant.name, workflow=res.Workflow(steps=steps)),
                metadata=tenant.metadata,
                timeout=5,
            )
    assert field_violations(caught.value) == ["workflow.steps"]


async def test_an_interrupted_run_resumes_at_its_first_unfinished_step(mesh: Mesh) -> None:
    """A run left RUNNING by a crashed process is finished by the next process, without redoing done steps."""
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        await agent_grpc.AgentServiceStub(channel).CreateAgent(
            agent_pb.CreateAgentRequest(
                parent=tenant.name,
                agent_id="echo",
                agent=agent_res.Agent(
                    instructions="Answer in one short sentence.", max_output_tokens=16, temperature=0
                ),
            ),
            metadata=tenant.metadata,
        )
    steps = [
        Step(id="a", agent=f"{tenant.name}/agents/echo"),
        Step(id="b", agent=f"{tenant.name}/agents/echo", input_template="Shorten: {{ steps.a.output }}"),
    ]
    async with mesh.channel("workflow") as channel:
        workflow = await pb_grpc.WorkflowServiceStub(channel).CreateWorkflow(
            pb.CreateWorkflowRequest(
                parent=tenant.name, workflow_id="resume", workflow=res.Workflow(steps=steps)
            ),
            metadata=tenant.metadata,
        )
    settings = mesh.config.settings("workflow").model_copy(
        update={"tls_dir": mesh.tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
    )
    db = Database(create_engine(settings, "workflow"))
    interrupted = WorkflowRunRow(
        tenant_id=tenant.id,
        id="interrupted",
        workflow_id="resume",
        input="ignored: step a already ran",
        state=RunState.RUNNING,
        steps=[
            {"step_id": "a", "state": "SUCCEEDED", "input": "x", "output": "Rotterdam", "agent_run": "r"},
            {"step_id": "b", "state": "RUNNING"},
        ],
        output="",
        error_reason="",
        error_message="",
        request_id=None,
        create_time=utcnow(),
        end_time=None,
    )
    await db.write(tenant.id, RUNS.insert, interrupted)
    await db.close()
    service, settings = await build_workflow(settings)
    restarted = await start(service, settings)
    try:
        async with mesh.channel("workflow") as channel:
            stub = pb_grpc.WorkflowServiceStub(channel)
            for _ in range(600):
                run = await stub.GetWorkflowRun(
                    pb.GetWorkflowRunRequest(name=f"{workflow.name}/runs/interrupted"),
                    metadata=tenant.metadata,
                )
                if run.state != res.RUN_STATE_RUNNING:
                    break
                await asyncio.sleep(0.2)
    finally:
        await restarted.stop(0)
    assert run.state == res.RUN_STATE_SUCCEEDED, run.error
    assert (run.steps[0].output, run.steps[0].agent_run) == ("Rotterdam", "r")
    assert run.steps[1].input == "Shorten: Rotterdam"
    assert run.steps[1].agent_run.startswith(f"{tenant.name}/agents/echo/runs/")


async def test_templates_that_blow_their_budget_fail_their_own_step(mesh: Mesh) -> None:
    """A template past its deadline, or rendering past the input bound, fails its step with a reason."""
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        await agent_grpc.AgentServiceStub(channel).CreateAgent(
            agent_pb.CreateAgentRequest(
                parent=tenant.name,
                agent_id="echo",
                agent=agent_res.Agent(instructions="Answer briefly.", max_output_tokens=8, temperature=0),
            ),
            metadata=tenant.metadata,
        )
    templates = {
        "cubic": "{% for a in input %}{% for b in input %}{% for c in input %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "huge": "{% for a in range(100000) %}{{ input }}{% endfor %}",
    }
    outcomes = {}
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        for workflow_id, template in templates.items():
            step = Step(id="only", agent=f"{tenant.name}/agents/echo", input_template=template)
            workflow = await stub.CreateWorkflow(
                pb.CreateWorkflowRequest(
                    parent=tenant.name, workflow_id=workflow_id, workflow=res.Workflow(steps=[step])
                ),
                metadata=tenant.metadata,
            )
            run = await stub.CreateWorkflowRun(
                pb.CreateWorkflowRunRequest(
                    parent=workflow.name, workflow_run=res.WorkflowRun(input="x" * 800)
                ),
                metadata=tenant.metadata,
            )
            for _ in range(300):
                run = await stub.GetWorkflowRun(
                    pb.GetWorkflowRunRequest(name=run.name), metadata=tenant.metadata
                )
                if run.state not in (res.RUN_STATE_PENDING, res.RUN_STATE_RUNNING):
                    break
                await asyncio.sleep(0.1)
            outcomes[workflow_id] = (run.state, run.steps[0].state, run.steps[0].error.message)
    assert outcomes == {
        "cubic": (
            res.RUN_STATE_FAILED,
            res.RUN_STATE_FAILED,
            "the input template took longer than 1 s to render",
        ),
        "huge": (
            res.RUN_STATE_FAILED,
            res.RUN_STATE_FAILED,
            "renders more than 32000 characters, the most a step's input may hold",
        ),
    }
