"""WorkflowService: protos in, domain calls, protos out."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.rpc import status_pb2

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as pb_grpc
from services.kit.audit import note_resource
from services.kit.auth import current_principal, require_tenant
from services.kit.clients import MeshClients
from services.kit.db import Database
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument, Unavailable, error_status, invalid
from services.kit.fieldmask import update_paths
from services.kit.names import TENANT, ResourceName, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.sealing import Sealer
from services.kit.timestamps import to_timestamp, utcnow
from services.workflow import definition, engine, errors, history, schedules, store
from services.workflow.models import ENDED, RunState, WorkflowRevisionRow, WorkflowRow, WorkflowRunRow
from services.workflow.schedules import ScheduleHandlers
from services.workflow.triggers import TriggerHandlers

WORKFLOW = ResourceName.of(res.Workflow)
WORKFLOW_RUN = ResourceName.of(res.WorkflowRun)
WORKFLOW_RUN_EVENT = ResourceName.of(res.WorkflowRunEvent)
AGENT = ResourceName.of(agent_res.Agent)
HTTP_TOOL = ResourceName.of(agent_res.HttpTool)
CHANNEL = ResourceName.of(agent_res.NotificationChannel)
RUN_STATES = EnumMap(RunState, res.RunState, "RUN_STATE_")
#: The fields `UpdateWorkflow` may replace (AIP-134).
MUTABLE_FIELDS = ("display_name", *definition.DEFINITION_FIELDS)
OUTPUT_ONLY_FIELDS = frozenset({"name", "create_time", "revision_id", "revision_create_time"})


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def workflow_to_proto(
    tenant_id: str,
    workflow_id: str,
    display_name: str,
    stored: dict[str, Any],
    create_time: dt.datetime,
    revision_id: str,
    revision_create_time: dt.datetime,
) -> res.Workflow:
    """Maps a stored workflow (or one of its revisions) to the resource."""
    workflow = definition.from_json(stored)
    workflow.name = WORKFLOW.format(tenant_id, workflow_id)
    workflow.display_name = display_name
    workflow.create_time.CopyFrom(to_timestamp(create_time))
    workflow.revision_id = revision_id
    workflow.revision_create_time.CopyFrom(to_timestamp(revision_create_time))
    return workflow


def _workflow(row: WorkflowRow) -> res.Workflow:
    return workflow_to_proto(
        row.tenant_id,
        row.id,
        row.display_name,
        row.definition,
        row.create_time,
        row.revision_id,
        row.revision_create_time,
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
                attempts=step.get("attempts", 0),
                compensated=step.get("compensated", False),
            )
            for step in run.steps
        ],
        output=run.output,
        error=_error(run.error_reason, run.error_message),
        create_time=to_timestamp(run.create_time),
        end_time=to_timestamp(run.end_time),
        revision_id=run.revision_id,
        trigger=run.trigger,
    )


class WorkflowService(TriggerHandlers, ScheduleHandlers, pb_grpc.WorkflowServiceServicer):
    """Workflows, their runs, webhook triggers and schedules (the mixins of ``triggers`` and ``schedules``).

    Args:
        db: The workflow database.
        clients: mTLS channels (the agent service).
        sealer: Encrypts webhook triggers' secrets at rest.
    """

    def __init__(self, db: Database, clients: MeshClients, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer
        self._clients = clients
        schedules.bind(db, self)  # the schedules' DBOS workflow starts runs with start_run
        self._agents = clients.stub(agent_grpc.AgentServiceStub, "agent")

    # Definitions ---------------------------------------------------------------------------

    async def _check(self, tenant_id: str, workflow_id: str, workflow: res.Workflow) -> dict[str, Any]:
        """Validates a definition, cheap checks first; returns it as stored.

        The agents, tools and sub-workflows it names are looked up (together) only
        when everything else is valid.

        Raises:
            InvalidArgument: With a violation per bad field.
            Unavailable: The agent service could not be asked.
        """
        violations = definition.check(workflow)
        # (field path, name, ID) of each agent, tool and workflow the steps name, by kind.
        named: dict[str, list[tuple[str, str, str]]] = {
            "agent": [],
            "workflow": [],
            "tool": [],
            "http_tool": [],
        }
        for i, step in enumerate(workflow.steps):
            for path, value, kind in _references(step, f"workflow.steps[{i}]"):
                if kind == "tool" and not value.startswith("tenants/"):
                    named["tool"].append((path, value, value))
                    continue
                if kind in ("tool", "channel"):  # a tenant's HTTP tool, a notification channel
                    try:
                        owner, _ = (HTTP_TOOL if kind == "tool" else CHANNEL).parse(value, path)
                    except InvalidArgument as error:
                        violations += error.violations
                        continue
                    if owner != tenant_id:
                        violations.append(FieldViolation(path, "must be of the same tenant"))
                    elif kind == "tool":
                        named["http_tool"].append((path, value, value))
                    continue
                try:
                    owner, referenced = (AGENT if kind == "agent" else WORKFLOW).parse(value, path)
                except InvalidArgument as error:
                    violations += error.violations
                    continue
                if owner != tenant_id:
                    violations.append(
                        FieldViolation(
                            path,
                            f"must be {'an agent' if kind == 'agent' else 'a workflow'} of the same tenant",
                        )
                    )
                elif kind == "workflow" and referenced == workflow_id:
                    violations.append(FieldViolation(path, "must be another workflow"))
                else:
                    named[kind].append((path, value, referenced))
        if violations:
            raise InvalidArgument(violations)
        agents = sorted({value for _, value, _ in named["agent"] + named["http_tool"]})
        found, tools = await asyncio.gather(
            asyncio.gather(*(self._agent_exists(tenant_id, a) for a in agents)),
            self._builtin_tools() if named["tool"] else asyncio.sleep(0, set()),
        )
        exists = dict(zip(agents, found, strict=True))
        missing = [
            FieldViolation(p, f"{value} does not exist")
            for p, value, _ in named["agent"] + named["http_tool"]
            if not exists[value]
        ]
        missing += [
            FieldViolation(p, f"{value} is not a built-in tool")
            for p, value, _ in named["tool"]
            if value not in tools
        ]
        for path, value, referenced in named["workflow"]:
            if await self._db.read(tenant_id, store.get_workflow, referenced) is None:
                missing.append(FieldViolation(path, f"{value} does not exist"))
        if missing:
            raise InvalidArgument(missing)
        return definition.to_json(workflow)

    async def _agent_exists(self, tenant_id: str, agent: str) -> bool:
        """Whether the agent, or the HTTP tool, ``agent`` names exists (asked of the agent service)."""
        try:
            if agent.split("/")[2:3] == ["httpTools"]:
                await self._agents.GetHttpTool(
                    agent_pb.GetHttpToolRequest(name=agent),
                    timeout=self._clients.timeout,
                    metadata=MeshClients.for_tenant(tenant_id),
                )
            else:
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

    async def _builtin_tools(self) -> set[str]:
        try:
            listed = await self._agents.ListTools(
                agent_pb.ListToolsRequest(page_size=1000), timeout=self._clients.timeout
            )
        except grpc.aio.AioRpcError:
            raise Unavailable(
                "AGENT_SERVICE_UNAVAILABLE", "tools could not be checked; retry later"
            ) from None
        return {tool.name for tool in listed.tools}

    async def CreateWorkflow(
        self, request: pb.CreateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> res.Workflow:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if request.workflow_id:
            validate_id(request.workflow_id, "workflow_id")
        workflow_id = request.workflow_id or new_id()
        now = utcnow()
        row = WorkflowRow(
            tenant_id=tenant_id,
            id=workflow_id,
            display_name=request.workflow.display_name,
            request_id=request.request_id or None,
            create_time=now,
            revision_id="1",
            revision_create_time=now,
            definition=await self._check(tenant_id, workflow_id, request.workflow),
        )
        name = WORKFLOW.format(tenant_id, workflow_id)
        note_resource(name)
        created = await self._db.write(tenant_id, store.create_workflow, row)
        if created is None:
            raise errors.workflow_exists(name)
        return _workflow(created)

    async def GetWorkflow(
        self, request: pb.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> res.Workflow:
        tenant_id, workflow_id = WORKFLOW.parse(request.name, "name")
        require_tenant(tenant_id)
        workflow = await self._db.read(tenant_id, store.get_workflow, workflow_id)
        if workflow is None:
            raise errors.workflow_not_found(request.name)
        return _workflow(workflow)

    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowsResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_workflows, page)
        workflows, token = listing.messages(_workflow)
        return pb.ListWorkflowsResponse(workflows=workflows, next_page_token=token)

    async def UpdateWorkflow(
        self, request: pb.UpdateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> res.Workflow:
        tenant_id, workflow_id = WORKFLOW.parse(request.workflow.name, "workflow.name")
        require_tenant(tenant_id)
        paths = update_paths(request.update_mask, MUTABLE_FIELDS, OUTPUT_ONLY_FIELDS)
        current = await self._db.read(tenant_id, store.get_workflow, workflow_id)
        if current is None:
            raise errors.workflow_not_found(request.workflow.name)
        updated = _workflow(current)
        for path in paths:
            updated.ClearField(path)
            if path == "steps":
                updated.steps.extend(request.workflow.steps)
            elif path == "run_timeout":
                if request.workflow.HasField("run_timeout"):
                    updated.run_timeout.CopyFrom(request.workflow.run_timeout)
            else:
                setattr(updated, path, getattr(request.workflow, path))
        stored = await self._check(tenant_id, workflow_id, updated)
        note_resource(request.workflow.name)
        row = await self._db.write(
            tenant_id, store.update_workflow, workflow_id, updated.display_name, stored, utcnow()
        )
        if row is None:
            raise errors.workflow_not_found(request.workflow.name)
        return _workflow(row)

    async def ListWorkflowRevisions(
        self, request: pb.ListWorkflowRevisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowRevisionsResponse:
        tenant_id, workflow_id = WORKFLOW.parse(request.name, "name")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.name)
        workflow = await self._db.read(tenant_id, store.get_workflow, workflow_id)
        listing = await self._db.read(tenant_id, store.list_revisions, workflow_id, page)
        if workflow is None or listing is None:
            raise errors.workflow_not_found(request.name)

        def to_proto(revision: WorkflowRevisionRow) -> res.Workflow:
            return workflow_to_proto(
                tenant_id,
                workflow_id,
                revision.display_name,
                revision.definition,
                workflow.create_time,
                revision.revision_id,
                revision.create_time,
            )

        workflows, token = listing.messages(to_proto)
        return pb.ListWorkflowRevisionsResponse(workflows=workflows, next_page_token=token)

    # Runs ----------------------------------------------------------------------------------

    async def start_run(
        self, tenant_id: str, workflow_id: str, run_input: str, request_id: str | None, *, trigger: str
    ) -> WorkflowRunRow:
        """Starts a run of the workflow's current revision, or returns the one an earlier request started.

        The run row is committed first and then enqueued in the engine; a crash
        between the two is repaired at start-up (:func:`resume_runs`).

        Raises:
            NotFound: ``WORKFLOW_NOT_FOUND``.
        """
        run = store.new_run(tenant_id, workflow_id, run_input, request_id, trigger)
        note_resource(WORKFLOW_RUN.format(tenant_id, workflow_id, run.id))
        stored, created = await self._db.write(tenant_id, store.start_run, run)
        if stored is None:
            raise errors.workflow_not_found(WORKFLOW.format(tenant_id, workflow_id))
        if created or stored.state == RunState.PENDING:
            await engine.enqueue(tenant_id, stored.id)
        return stored

    async def CreateWorkflowRun(
        self, request: pb.CreateWorkflowRunRequest, context: grpc.aio.ServicerContext
    ) -> res.WorkflowRun:
        tenant_id, workflow_id = WORKFLOW.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if not request.workflow_run.input.strip():  # its length is the contract's rule
            raise invalid("workflow_run.input", "must not be blank")
        run = await self.start_run(
            tenant_id, workflow_id, request.workflow_run.input, request.request_id or None, trigger="api"
        )
        return run_to_proto(run)

    async def _run(self, name: str) -> WorkflowRunRow:
        tenant_id, workflow_id, run_id = WORKFLOW_RUN.parse(name, "name")
        require_tenant(tenant_id)
        run = await self._db.read(tenant_id, store.get_run, workflow_id, run_id)
        if run is None:
            raise errors.run_not_found(name)
        return run

    async def GetWorkflowRun(
        self, request: pb.GetWorkflowRunRequest, context: grpc.aio.ServicerContext
    ) -> res.WorkflowRun:
        return run_to_proto(await self._run(request.name))

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

    async def CancelWorkflowRun(
        self, request: pb.CancelWorkflowRunRequest, context: grpc.aio.ServicerContext
    ) -> res.WorkflowRun:
        run = await self._run(request.name)
        if run.state in ENDED:
            return run_to_proto(run)
        note_resource(request.name)
        after = await self._db.write(
            run.tenant_id,
            store.append_event,
            run.id,
            history.RUN_CANCEL_REQUESTED,
            "",
            {},
            "cancel",
            utcnow(),
        )
        assert after is not None
        in_progress = [
            s["step_id"] for s in after.steps if s["state"] in (RunState.RUNNING, RunState.WAITING)
        ]
        await engine.cancel_steps(run.id, in_progress)
        return run_to_proto(after)

    async def SignalWorkflowRun(
        self, request: pb.SignalWorkflowRunRequest, context: grpc.aio.ServicerContext
    ) -> res.WorkflowRun:
        run = await self._run(request.name)
        if request.signal_name not in {s["step_id"] for s in run.steps}:
            raise invalid("signal_name", f"names no step of the run ({request.signal_name!r})")
        # Who decided is the caller, never what the payload claims.
        payload = json_format.MessageToDict(request.payload) | {"decided_by": current_principal().subject}
        revision = await self._db.read(run.tenant_id, store.get_revision, run.workflow_id, run.revision_id)
        assert revision is not None
        step = next(s for s in definition.from_json(revision.definition).steps if s.id == request.signal_name)
        if definition.kind(step) == "approval" and not isinstance(payload.get("approved"), bool):
            raise invalid("payload.approved", "must be a bool: the approval's decision")
        if run.state in ENDED:
            raise errors.run_ended(request.name)
        note_resource(request.name)
        request_id = request.request_id or new_id()
        await self._db.write(
            run.tenant_id, store.add_signal, run.id, request.signal_name, payload, request_id, utcnow()
        )
        await engine.wake(run.id, request.signal_name, request_id)
        return run_to_proto(await self._run(request.name))

    async def ListWorkflowRunEvents(
        self, request: pb.ListWorkflowRunEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowRunEventsResponse:
        tenant_id, workflow_id, run_id = WORKFLOW_RUN.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size or 100, request.page_token, request.parent)
        listed = await self._db.read(tenant_id, store.list_events, workflow_id, run_id, page)
        if listed is None:
            raise errors.run_not_found(request.parent)

        def to_proto(event: Any) -> res.WorkflowRunEvent:
            data = struct_pb2.Struct()
            data.update(json.loads(json.dumps(event.data)))
            return res.WorkflowRunEvent(
                name=f"{request.parent}/events/{event.sequence}",
                sequence=event.sequence,
                type=event.type,
                step_id=event.step_id,
                time=to_timestamp(event.time),
                data=data,
            )

        events, token = listed.messages(to_proto)
        return pb.ListWorkflowRunEventsResponse(events=events, next_page_token=token)

    async def GetWorkflowRunGraph(
        self, request: pb.GetWorkflowRunGraphRequest, context: grpc.aio.ServicerContext
    ) -> res.WorkflowRunGraph:
        run = await self._run(request.name)
        revision = await self._db.read(run.tenant_id, store.get_revision, run.workflow_id, run.revision_id)
        assert revision is not None
        states = {step["step_id"]: step["state"] for step in run.steps}
        return res.WorkflowRunGraph(
            name=request.name, mermaid=definition.mermaid(definition.from_json(revision.definition), states)
        )


def _references(step: res.Workflow.Step, path: str) -> list[tuple[str, str, str]]:
    """``(field path, value, kind)`` of each agent, tool, workflow and notification channel a step names.

    ``kind`` is ``agent``, ``tool``, ``workflow`` or ``channel`` (a notification's
    channel that names a notification channel; free text names none).
    """
    found: list[tuple[str, str, str]] = []

    def task(message: Any, at: str) -> None:
        if isinstance(message, res.Workflow.AgentRun):
            found.append((f"{at}.agent", message.agent, "agent"))
        elif isinstance(message, res.Workflow.ToolCall):
            found.append((f"{at}.tool", message.tool, "tool"))

    kind = definition.kind(step)
    if kind in ("agent_run", "tool_call"):
        task(getattr(step, kind), f"{path}.{kind}")
    elif kind == "map":
        which = step.map.WhichOneof("task")
        if which:
            task(getattr(step.map, which), f"{path}.map.{which}")
    elif kind == "sub_workflow":
        found.append((f"{path}.sub_workflow.workflow", step.sub_workflow.workflow, "workflow"))
    elif kind == "notification" and definition.is_notification_channel(step.notification.channel):
        found.append((f"{path}.notification.channel", step.notification.channel, "channel"))
    if step.HasField("compensation"):
        action = step.compensation.WhichOneof("action")
        if action in ("agent_run", "tool_call"):
            task(getattr(step.compensation, action), f"{path}.compensation.{action}")
        channel = step.compensation.notification.channel
        if action == "notification" and definition.is_notification_channel(channel):
            found.append((f"{path}.compensation.notification.channel", channel, "channel"))
    return found


async def resume_runs(db: Database) -> None:
    """Enqueues every unfinished run in the engine (idempotent), for a run whose enqueue a crash cut off."""
    for tenant_id, run_id in await db.system(store.unfinished_runs):
        await engine.enqueue(tenant_id, run_id)
