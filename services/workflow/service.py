"""WorkflowService: protos in, domain calls, protos out."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import grpc
from google.rpc import status_pb2

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as pb_grpc
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.clients import MeshClients
from services.kit.db import Database
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument, Unavailable, error_status, invalid
from services.kit.names import TENANT, ResourceName, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.sealing import Sealer
from services.kit.timestamps import to_timestamp, utcnow
from services.workflow import errors, schedules, store, templates
from services.workflow.executor import Executor
from services.workflow.models import RunState, StepDefinition, WorkflowRow, WorkflowRunRow
from services.workflow.schedules import ScheduleHandlers
from services.workflow.triggers import TriggerHandlers

_STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
WORKFLOW = ResourceName.of(res.Workflow)
WORKFLOW_RUN = ResourceName.of(res.WorkflowRun)
AGENT = ResourceName.of(agent_res.Agent)
RUN_STATES = EnumMap(RunState, res.RunState, "RUN_STATE_")


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def workflow_to_proto(workflow: WorkflowRow) -> res.Workflow:
    """Maps a workflow row to its resource."""
    return res.Workflow(
        name=WORKFLOW.format(workflow.tenant_id, workflow.id),
        display_name=workflow.display_name,
        steps=[
            res.Workflow.Step(
                id=step["id"],
                agent_run=res.Workflow.AgentRun(agent=step["agent"], input_template=step["input_template"]),
            )
            for step in workflow.steps
        ],
        create_time=to_timestamp(workflow.create_time),
    )


def _error(reason: str, message: str) -> status_pb2.Status | None:
    """The stored failure of a run or step as a status (ABORTED: the run stopped at a failed step)."""
    return error_status(grpc.StatusCode.ABORTED, reason, message, errors.DOMAIN) if reason else None


def run_to_proto(run: WorkflowRunRow) -> res.WorkflowRun:
    """Maps a run row to its resource."""
    return res.WorkflowRun(
        name=WORKFLOW_RUN.format(run.tenant_id, run.workflow_id, run.id),
        input=run.input,
        state=RUN_STATES.to_proto(run.state),
        steps=[
            res.WorkflowRun.StepRun(
                step_id=step["step_id"],
                state=RUN_STATES.to_proto(step["state"]),
                input=step.get("input", ""),
                output=step.get("output", ""),
                agent_run=step.get("agent_run", ""),
                error=_error(step.get("error_reason", ""), step.get("error_message", "")),
                start_time=to_timestamp(_time(step.get("start_time"))),
                end_time=to_timestamp(_time(step.get("end_time"))),
            )
            for step in run.steps
        ],
        output=run.output,
        error=_error(run.error_reason, run.error_message),
        create_time=to_timestamp(run.create_time),
        end_time=to_timestamp(run.end_time),
    )


class WorkflowService(TriggerHandlers, ScheduleHandlers, pb_grpc.WorkflowServiceServicer):
    """Workflows, their runs, webhook triggers and schedules (the mixins of ``triggers`` and ``schedules``).

    Args:
        db: The workflow database.
        clients: mTLS channels (the agent service).
        executor: Runs workflow runs in the background.
        sealer: Encrypts webhook triggers' secrets at rest.
    """

    def __init__(self, db: Database, clients: MeshClients, executor: Executor, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer
        self._clients = clients
        self._agents = clients.stub(agent_grpc.AgentServiceStub, "agent")
        self._executor = executor
        schedules.bind(db, self)  # the schedules' DBOS workflow starts runs with start_run

    async def _check_steps(self, tenant_id: str, workflow: res.Workflow) -> list[StepDefinition]:
        """Validates the steps, cheap checks first.

        The agents are looked up (together) only when everything else is valid.

        Raises:
            InvalidArgument: With a violation per bad field.
            Unavailable: The agent service could not be asked.
        """
        if not workflow.steps:  # the most steps is the contract's rule, checked by the guard
            raise InvalidArgument([FieldViolation("workflow.steps", "must have at least one step")])
        violations: list[FieldViolation] = []
        seen: list[str] = []
        for i, step in enumerate(workflow.steps):
            path = f"workflow.steps[{i}]"
            if not _STEP_ID.match(step.id):
                violations.append(
                    FieldViolation(f"{path}.id", "must be 1-63 of a-z, 0-9 and _, starting with a letter")
                )
            elif step.id in seen:
                violations.append(FieldViolation(f"{path}.id", f"duplicates step {step.id!r}"))
            try:
                agent_tenant, _ = AGENT.parse(step.agent_run.agent, f"{path}.agent_run.agent")
                if agent_tenant != tenant_id:
                    violations.append(
                        FieldViolation(f"{path}.agent_run.agent", "must be an agent of the same tenant")
                    )
            except InvalidArgument as error:
                violations += error.violations
            try:
                templates.check(step.agent_run.input_template or templates.DEFAULT_TEMPLATE, seen)
            except templates.TemplateProblem as problem:
                violations.append(FieldViolation(f"{path}.agent_run.input_template", str(problem)))
            seen.append(step.id)
        if violations:
            raise InvalidArgument(violations)
        agents = sorted({step.agent_run.agent for step in workflow.steps})
        found = dict(
            zip(
                agents, await asyncio.gather(*(self._agent_exists(tenant_id, a) for a in agents)), strict=True
            )
        )
        missing = [
            FieldViolation(f"workflow.steps[{i}].agent_run.agent", f"{step.agent_run.agent} does not exist")
            for i, step in enumerate(workflow.steps)
            if not found[step.agent_run.agent]
        ]
        if missing:
            raise InvalidArgument(missing)
        return [
            StepDefinition(id=s.id, agent=s.agent_run.agent, input_template=s.agent_run.input_template)
            for s in workflow.steps
        ]

    async def _agent_exists(self, tenant_id: str, agent: str) -> bool:
        try:
            await self._agents.GetAgent(
                agent_pb.GetAgentRequest(name=agent),
                timeout=self._clients.timeout,
                metadata=MeshClients.for_tenant(tenant_id),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise Unavailable(
                "AGENT_SERVICE_UNAVAILABLE", "agents could not be checked; retry later"
            ) from None
        return True

    async def CreateWorkflow(
        self, request: pb.CreateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> res.Workflow:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if request.workflow_id:
            validate_id(request.workflow_id, "workflow_id")
        workflow = WorkflowRow(
            tenant_id=tenant_id,
            id=request.workflow_id or new_id(),
            display_name=request.workflow.display_name[:200],
            steps=await self._check_steps(tenant_id, request.workflow),
            request_id=request.request_id or None,
            create_time=utcnow(),
        )
        name = WORKFLOW.format(tenant_id, workflow.id)
        note_resource(name)
        created = await self._db.write(tenant_id, store.create_workflow, workflow)
        if created is None:
            raise errors.workflow_exists(name)
        return workflow_to_proto(created)

    async def GetWorkflow(
        self, request: pb.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> res.Workflow:
        tenant_id, workflow_id = WORKFLOW.parse(request.name, "name")
        require_tenant(tenant_id)
        workflow = await self._db.read(tenant_id, store.get_workflow, workflow_id)
        if workflow is None:
            raise errors.workflow_not_found(request.name)
        return workflow_to_proto(workflow)

    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowsResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_workflows, page)
        workflows, token = listing.messages(workflow_to_proto)
        return pb.ListWorkflowsResponse(workflows=workflows, next_page_token=token)

    async def CreateWorkflowRun(
        self, request: pb.CreateWorkflowRunRequest, context: grpc.aio.ServicerContext
    ) -> res.WorkflowRun:
        tenant_id, workflow_id = WORKFLOW.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if not request.workflow_run.input.strip():  # its length is the contract's rule
            raise invalid("workflow_run.input", "must not be blank")
        run_id = new_id()
        note_resource(WORKFLOW_RUN.format(tenant_id, workflow_id, run_id))
        workflow, run, created = await self._db.write(
            tenant_id, store.start_run, self._new_run(tenant_id, workflow_id, run_id, request)
        )
        if workflow is None or run is None:
            raise errors.workflow_not_found(request.parent)
        if created:
            self._executor.start(workflow, run)
        return run_to_proto(run)

    async def start_run(
        self, tenant_id: str, workflow_id: str, run_input: str, request_id: str | None, *, trigger: str
    ) -> WorkflowRunRow:
        """Starts a run of the tenant's workflow, or finds the one an earlier start with ``request_id`` made.

        Minimal version until the durable engine lands: the run is inserted as
        ``CreateWorkflowRun`` inserts it, and ``trigger`` (what started it) is not stored yet.

        Raises:
            NotFound: ``WORKFLOW_NOT_FOUND``.
        """
        run = WorkflowRunRow(
            tenant_id=tenant_id,
            id=new_id(),
            workflow_id=workflow_id,
            input=run_input,
            state=RunState.PENDING,
            steps=[],  # filled from the workflow by store.start_run
            output="",
            error_reason="",
            error_message="",
            request_id=request_id,
            create_time=utcnow(),
            end_time=None,
        )
        workflow, started, created = await self._db.write(tenant_id, store.start_run, run)
        if workflow is None or started is None:
            raise errors.workflow_not_found(WORKFLOW.format(tenant_id, workflow_id))
        if created:
            self._executor.start(workflow, started)
        return started

    @staticmethod
    def _new_run(
        tenant_id: str, workflow_id: str, run_id: str, request: pb.CreateWorkflowRunRequest
    ) -> WorkflowRunRow:
        return WorkflowRunRow(
            tenant_id=tenant_id,
            id=run_id,
            workflow_id=workflow_id,
            input=request.workflow_run.input,
            state=RunState.PENDING,
            steps=[],  # filled from the workflow by store.start_run
            output="",
            error_reason="",
            error_message="",
            request_id=request.request_id or None,
            create_time=utcnow(),
            end_time=None,
        )

    async def GetWorkflowRun(
        self, request: pb.GetWorkflowRunRequest, context: grpc.aio.ServicerContext
    ) -> res.WorkflowRun:
        tenant_id, workflow_id, run_id = WORKFLOW_RUN.parse(request.name, "name")
        require_tenant(tenant_id)
        run = await self._db.read(tenant_id, store.get_run, workflow_id, run_id)
        if run is None:
            raise errors.run_not_found(request.name)
        return run_to_proto(run)

    async def ListWorkflowRuns(
        self, request: pb.ListWorkflowRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowRunsResponse:
        tenant_id, workflow_id = WORKFLOW.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listed = await self._db.read(tenant_id, store.list_runs, workflow_id, page)
        if listed is None:
            raise errors.workflow_not_found(request.parent)
        runs, token = listed.messages(run_to_proto)
        return pb.ListWorkflowRunsResponse(workflow_runs=runs, next_page_token=token)
