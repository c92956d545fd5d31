"""Runs workflow runs step by step, durably.

Each step calls ``AgentService.CreateRun`` with ``request_id`` =
``<workflow run id>:<step id>``, so re-running a step after a crash returns
the agent run made the first time instead of running the agent twice. The
run row is saved after every step; at start-up :meth:`Executor.resume`
restarts every unfinished run.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from services.kit.clients import MeshClients
from services.kit.db import Database
from services.kit.timestamps import utcnow
from services.workflow import store, templates
from services.workflow.models import Workflow, WorkflowRun

log = logging.getLogger(__name__)

# Model calls are slow; a step may take this long before it is failed.
STEP_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.5


class Executor:
    """Background execution of workflow runs.

    Args:
        db: The workflow database.
        clients: mTLS channels; steps call the agent service on the workflow
            service's identity, acting for the run's tenant.
    """

    def __init__(self, db: Database, clients: MeshClients) -> None:
        self._db = db
        self._clients = clients
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, workflow: Workflow, run: WorkflowRun) -> None:
        """Schedules a run in the background."""
        task = asyncio.create_task(self._run(workflow, run), name=f"workflow-run-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """Restarts every run a previous process left unfinished.

        A system read across tenants (``all_tenants``): at start-up no caller names a tenant.
        """
        async with self._db.transaction(all_tenants=True) as session:
            runs = await store.unfinished_runs(session)
            pairs = [(await store.get_workflow(session, r.tenant_id, r.workflow_id), r) for r in runs]
        for workflow, run in pairs:
            if workflow is not None:
                log.info("resuming workflow run %s", run.id)
                self.start(workflow, run)

    async def stop(self) -> None:
        """Cancels running tasks; their runs resume at the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _save(self, run: WorkflowRun) -> None:
        # Explicit tenant: a resumed run has no caller whose tenant the transaction could take.
        async with self._db.transaction(tenant=run.tenant_id) as session:
            await store.save_run(session, run)

    async def _run(self, workflow: Workflow, run: WorkflowRun) -> None:
        try:
            await self._run_steps(workflow, run)
        except asyncio.CancelledError:
            raise  # stopping: the run resumes at the next start
        except Exception:
            log.exception("workflow run %s failed unexpectedly", run.id)
            run.state, run.error_reason, run.error_message = (
                "FAILED",
                "INTERNAL",
                "the workflow engine failed",
            )
            run.end_time = utcnow()
            await self._save(run)

    async def _run_steps(self, workflow: Workflow, run: WorkflowRun) -> None:
        run.state = "RUNNING"
        await self._save(run)
        outputs = {s["step_id"]: s["output"] for s in run.steps if s["state"] == "SUCCEEDED"}
        for definition, step in zip(workflow.steps, run.steps, strict=True):
            if step["state"] == "SUCCEEDED":
                continue
            step.update(state="RUNNING", start_time=utcnow().isoformat())
            await self._save(run)
            failure = await self._run_step(run, definition, step, outputs)
            step["end_time"] = utcnow().isoformat()
            if failure is not None:
                step.update(state="FAILED", error_reason=failure[0], error_message=failure[1])
                run.state, run.error_reason = "FAILED", failure[0]
                run.error_message = f"step {step['step_id']}: {failure[1]}"
                run.end_time = utcnow()
                await self._save(run)
                return
            step["state"] = "SUCCEEDED"
            outputs[step["step_id"]] = step["output"]
            await self._save(run)
        run.state, run.output, run.end_time = "SUCCEEDED", run.steps[-1]["output"], utcnow()
        await self._save(run)

    async def _wait_for(self, stub: agent_grpc.AgentServiceStub, name: str, tenant_id: str) -> agent_res.Run:
        """Polls an agent run until it has ended or :data:`STEP_TIMEOUT_SECONDS` passed."""
        deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT_SECONDS
        while True:
            agent_run = await stub.GetRun(
                agent_pb.GetRunRequest(name=name),
                timeout=self._clients.timeout,
                metadata=MeshClients.for_tenant(tenant_id),
            )
            if agent_run.state != agent_res.Run.STATE_RUNNING or asyncio.get_running_loop().time() > deadline:
                return agent_run
            await asyncio.sleep(POLL_SECONDS)

    async def _run_step(
        self, run: WorkflowRun, definition: dict[str, str], step: dict[str, str], outputs: dict[str, str]
    ) -> tuple[str, str] | None:
        """Runs one step; returns (reason, message) on failure."""
        try:
            step["input"] = templates.render(definition.get("input_template", ""), run.input, outputs)
        except templates.TemplateProblem as problem:
            return "TEMPLATE_FAILED", str(problem)
        stub = agent_grpc.AgentServiceStub(self._clients.channel("agent"))
        try:
            agent_run = await stub.CreateRun(
                agent_pb.CreateRunRequest(
                    parent=definition["agent"],
                    run=agent_res.Run(input=step["input"]),
                    request_id=f"{run.id}:{step['step_id']}",
                ),
                timeout=STEP_TIMEOUT_SECONDS,
                metadata=MeshClients.for_tenant(run.tenant_id),
            )
        except grpc.aio.AioRpcError as error:
            return f"AGENT_{error.code().name}", error.details() or "agent call failed"
        step["agent_run"] = agent_run.name
        if agent_run.state == agent_res.Run.STATE_RUNNING:
            # A retry found the run a previous attempt started, still going: wait for it.
            try:
                agent_run = await self._wait_for(stub, agent_run.name, run.tenant_id)
            except grpc.aio.AioRpcError as error:
                return f"AGENT_{error.code().name}", error.details() or "agent run unavailable"
        if agent_run.state != agent_res.Run.STATE_SUCCEEDED:
            return "AGENT_RUN_FAILED", agent_run.error.message or "the agent run failed"
        step["output"] = agent_run.output
        return None
