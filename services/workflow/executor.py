"""Runs workflow runs step by step, durably.

Each step calls ``AgentService.CreateRun`` with ``request_id`` =
``<workflow run id>:<step id>``, so re-running a step after a crash returns
the agent run made the first time instead of running the agent twice, and then
``WaitRun`` until that run has ended. The
run row is saved after every step; at start-up :meth:`Executor.resume`
restarts every unfinished run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from services.kit.clients import MeshClients, peer_failure
from services.kit.db import Database
from services.kit.sandbox import Sandbox, SandboxFailed, SandboxTimeout
from services.kit.timestamps import utcnow
from services.workflow import store, templates
from services.workflow.models import RunState, StepDefinition, WorkflowRow, WorkflowRunRow

log = logging.getLogger(__name__)

# Model calls are slow; a step may take this long before it is failed.
STEP_TIMEOUT_SECONDS = 300.0
# One WaitRun call waits at most this long (within the agent route's 300 s).
WAIT_SECONDS = 60.0
APPROVAL_POLL_SECONDS = 1.0


class Executor:
    """Background execution of workflow runs.

    Args:
        db: The workflow database.
        clients: mTLS channels; steps call the agent service on the workflow
            service's identity, acting for the run's tenant.
        sandbox: Where step input templates are rendered, out of the event loop.
        template_timeout: Seconds a template may take to render.
    """

    def __init__(self, db: Database, clients: MeshClients, sandbox: Sandbox, template_timeout: float) -> None:
        self._db = db
        self._clients = clients
        self._sandbox = sandbox
        self._template_timeout = template_timeout
        self._agents = clients.stub(agent_grpc.AgentServiceStub, "agent")
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, workflow: WorkflowRow, run: WorkflowRunRow) -> None:
        """Schedules a run in the background."""
        task = asyncio.create_task(self._run(workflow, run), name=f"workflow-run-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """Restarts every run a previous process left unfinished (a system read across tenants)."""
        for workflow, run in await self._db.system(store.unfinished_runs):
            log.info("resuming workflow run %s", run.id)
            self.start(workflow, run)

    async def stop(self) -> None:
        """Cancels running tasks; their runs resume at the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _save(self, run: WorkflowRunRow) -> None:
        # The run's own tenant: a resumed run has no caller.
        await self._db.write(run.tenant_id, store.save_run, run)

    async def _run(self, workflow: WorkflowRow, run: WorkflowRunRow) -> None:
        try:
            await self._run_steps(workflow, run)
        except asyncio.CancelledError:
            raise  # stopping: the run resumes at the next start
        except Exception:
            log.exception("workflow run %s failed unexpectedly", run.id)
            await self._save(
                dataclasses.replace(
                    run,
                    state=RunState.FAILED,
                    error_reason="INTERNAL",
                    error_message="the workflow engine failed",
                    end_time=utcnow(),
                )
            )

    async def _run_steps(self, workflow: WorkflowRow, run: WorkflowRunRow) -> None:
        steps = [dict(step) for step in run.steps]
        run = dataclasses.replace(run, state=RunState.RUNNING, steps=steps)
        await self._save(run)
        outputs = {s["step_id"]: s["output"] for s in steps if s["state"] == RunState.SUCCEEDED}
        for definition, step in zip(workflow.steps, steps, strict=True):
            if step["state"] == RunState.SUCCEEDED:
                continue
            step.update(state=RunState.RUNNING, start_time=utcnow().isoformat())
            await self._save(run)
            failure = await self._run_step(run, definition, step, outputs)
            step["end_time"] = utcnow().isoformat()
            if failure is not None:
                step.update(state=RunState.FAILED, error_reason=failure[0], error_message=failure[1])
                await self._save(
                    dataclasses.replace(
                        run,
                        state=RunState.FAILED,
                        error_reason=failure[0],
                        error_message=f"step {step['step_id']}: {failure[1]}",
                        end_time=utcnow(),
                    )
                )
                return
            step["state"] = RunState.SUCCEEDED
            outputs[step["step_id"]] = step["output"]
            await self._save(run)
        await self._save(
            dataclasses.replace(run, state=RunState.SUCCEEDED, output=steps[-1]["output"], end_time=utcnow())
        )

    async def _wait_for(self, name: str, tenant_id: str) -> agent_res.Run:
        """Waits for an agent run to end, or until :data:`STEP_TIMEOUT_SECONDS` passed.

        ``WaitRun`` blocks in the agent service until the run leaves ``RUNNING``; a run
        that waits for a person's approval is waited for too, asking again every
        :data:`APPROVAL_POLL_SECONDS`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_TIMEOUT_SECONDS
        while True:
            remaining = deadline - loop.time()
            timeout = Duration()
            timeout.FromTimedelta(dt.timedelta(seconds=max(min(remaining, WAIT_SECONDS), 0)))
            agent_run = await self._agents.WaitRun(
                agent_pb.WaitRunRequest(name=name, timeout=timeout),
                timeout=WAIT_SECONDS + self._clients.timeout,
                metadata=MeshClients.for_tenant(tenant_id),
            )
            waiting = agent_run.state == agent_res.Run.STATE_REQUIRES_ACTION
            if not (waiting or agent_run.state == agent_res.Run.STATE_RUNNING) or loop.time() >= deadline:
                return agent_run
            if waiting:
                await asyncio.sleep(APPROVAL_POLL_SECONDS)

    async def _run_step(
        self, run: WorkflowRunRow, definition: StepDefinition, step: dict[str, Any], outputs: dict[str, str]
    ) -> tuple[str, str] | None:
        """Runs one step; returns (reason, message) on failure."""
        try:
            step["input"] = await self._sandbox.run(
                templates.render,
                definition.get("input_template", ""),
                run.input,
                outputs,
                timeout=self._template_timeout,
                owner=run.tenant_id,
            )
        except templates.TemplateProblem as problem:
            return "TEMPLATE_FAILED", str(problem)
        except SandboxTimeout:
            return (
                "TEMPLATE_TIMEOUT",
                f"the input template took longer than {self._template_timeout:g} s to render",
            )
        except SandboxFailed:
            return "TEMPLATE_FAILED", "the input template could not be rendered"
        try:
            agent_run = await self._agents.CreateRun(
                agent_pb.CreateRunRequest(
                    parent=definition["agent"],
                    run=agent_res.Run(input=step["input"]),
                    request_id=f"{run.id}:{step['step_id']}",
                ),
                timeout=self._clients.timeout,
                metadata=MeshClients.for_tenant(run.tenant_id),
            )
        except grpc.aio.AioRpcError as error:
            return peer_failure(error, "agent")
        step["agent_run"] = agent_run.name
        try:  # the agent run goes on in the background (also one a previous attempt started)
            agent_run = await self._wait_for(agent_run.name, run.tenant_id)
        except grpc.aio.AioRpcError as error:
            return peer_failure(error, "agent")
        if agent_run.state != agent_res.Run.STATE_SUCCEEDED:
            return "AGENT_RUN_FAILED", agent_run.error.message or "the agent run failed"
        step["output"] = agent_run.output
        return None
