"""The durable engine: DBOS workflows that interpret a workflow revision.

DBOS Transact (``dbos``) checkpoints every step of a DBOS workflow in its system
database (SQLite or PostgreSQL), and after a crash re-runs each unfinished
workflow, returning the recorded results of the steps that had finished. The
engine is three generic DBOS workflows:

* :func:`run_workflow`, one per run (DBOS workflow ID = the run ID): reads the
  pinned revision, schedules each step once its dependencies ended, evaluates
  conditions, waits for the first step to end (``DBOS.wait_first_async``,
  recorded, so a recovery takes the same turns), and at the end compensates or
  renders the output. Runs are enqueued on :data:`RUNS_QUEUE`, so every replica
  on one system database takes runs from it and no run runs twice.
* :func:`run_step`, one per step (``<run>/<step>``): the step's attempts with its
  retry policy, durable backoff sleeps, waits and approvals.
* :func:`run_compensation` (``<run>/<step>/compensation``) and
  :func:`run_map_item` (``<run>/<step>/<index>``).

Everything outside the engine's process (agent and tool calls, the clock,
template rendering, the service's database) happens in DBOS steps, so a
recovered run sees the same values. Every event a step appends carries the key
of that step (``<DBOS workflow>#<DBOS step>``), so a step run again after a
crash appends nothing twice. An agent step creates its agent run with the
request ID ``<run>:<step>:<attempt>``, so it is created once however often the
step runs.

:data:`APPLICATION_VERSION` is pinned: DBOS recovers a workflow only on the
application version that started it, and its default (a hash of the code)
would strand in-flight runs at every upgrade. Change it only with a change
that cannot replay the steps of runs recorded before it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos._error import DBOSAwaitedWorkflowCancelledError, DBOSException
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1 import resources_pb2 as agent_res
from orchestrall.workflow.v1 import resources_pb2 as res
from services.kit.clients import MeshClients, peer_failure
from services.kit.config import MeshSettings
from services.kit.db import Database, database_url, schema_name
from services.kit.metrics import RunOutcomes
from services.kit.sandbox import Sandbox, SandboxFailed, SandboxTimeout
from services.kit.timestamps import utcnow
from services.workflow import definition, expressions, history, store, templates
from services.workflow.models import RunState

log = logging.getLogger(__name__)

APPLICATION_VERSION = "orchestrall-workflow-1"
#: Runs wait in this DBOS queue until a replica takes them.
RUNS_QUEUE = "orchestrall-workflow-runs"
#: How often each replica asks the queue for runs (seconds).
QUEUE_POLL_SECONDS = 0.05
#: Seconds between two looks of DBOS's scheduler for schedules that changed (services.workflow.schedules).
SCHEDULER_POLL_SECONDS = 0.5
#: How often a waiting workflow asks whether a child has ended (seconds; DBOS's ``wait_first``
#: reads the system database each time): often while a child does work, seldom while every
#: child waits for a person or a timer, so a run that waits days costs one query a second.
POLL_SECONDS = 0.02
SLOW_POLL_SECONDS = 1.0
#: One WaitRun call waits at most this long (within the agent route's 300 s).
WAIT_SECONDS = 60.0
#: Between two WaitRun calls while an agent run waits for a person's approval.
APPROVAL_POLL_SECONDS = 5.0
#: Between two calls to an agent service that could not be reached, within an attempt (seconds).
PEER_RETRY_SECONDS = 1.0
#: The agent service's answers that mean "not now": an attempt asks again, with the same request ID.
WAIT_FOR_PLACE = frozenset({"TOO_MANY_RUNS", "TENANT_BUSY"})
#: Failure reasons retried when a retry policy names none.
TRANSIENT = frozenset({"STEP_TIMEOUT", "TENANT_BUSY"})
#: At most this many items a map fans out to.
MAX_MAP_ITEMS = 100

Outcome = dict[str, Any]  # {"output": JSON value} or {"error_reason", "error_message"}


def dbos_schema(service_schema: str) -> str:
    """The PostgreSQL schema of DBOS's system tables, next to the service's own."""
    return f"{service_schema}_dbos"


def dbos_config(settings: MeshSettings, executor_id: str) -> DBOSConfig:
    """DBOS's configuration: the system database beside the service's database.

    On PostgreSQL the tables are in :func:`dbos_schema` (made by migration 0004
    with the migration role) and the service connects as its own role without
    running DBOS's migrations; on SQLite DBOS keeps ``workflow-dbos.db`` in the
    state folder and creates it at launch.
    """
    url = database_url(settings, "workflow")
    config: DBOSConfig = {
        "name": "orchestrall-workflow",
        "application_version": APPLICATION_VERSION,
        "executor_id": executor_id,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.05,
        # How soon DBOS's scheduler sees a new, paused or resumed schedule (DBOS's default is 30 s).
        "scheduler_polling_interval_sec": SCHEDULER_POLL_SECONDS,
    }
    if url.get_backend_name() == "postgresql":
        config["system_database_url"] = url.render_as_string(hide_password=False)
        config["dbos_system_schema"] = dbos_schema(schema_name(settings, "workflow"))
        config["run_migrations"] = False
    else:
        config["system_database_url"] = f"sqlite:///{settings.state_dir / 'workflow-dbos.db'}"
    return config


@dataclasses.dataclass
class Engine:
    """What the engine's DBOS workflows reach outside themselves.

    DBOS workflows are module-level functions found by name at recovery, so they
    reach the service's objects through :func:`current` (one engine per process,
    as DBOS is one per process).

    Attributes:
        db: The workflow database.
        clients: mTLS channels (the agent service).
        sandbox: Where templates are rendered, out of the event loop.
        template_timeout: Seconds a template may take to render.
        outcomes: Counts the runs that end (in the step that appends their last event, which
            DBOS runs once, not again when it replays a recovered workflow).
    """

    db: Database
    clients: MeshClients
    sandbox: Sandbox
    template_timeout: float
    outcomes: RunOutcomes | None = None

    def __post_init__(self) -> None:
        self.agents = self.clients.stub(agent_grpc.AgentServiceStub, "agent")


_CURRENT: Engine | None = None


def current() -> Engine:
    """The launched engine of this process."""
    assert _CURRENT is not None, "the workflow engine is not launched"
    return _CURRENT


async def launch(engine: Engine, settings: MeshSettings, executor_id: str, runs_per_replica: int) -> None:
    """Starts DBOS in the running event loop; it recovers this executor's unfinished workflows.

    Args:
        engine: What the workflows reach.
        settings: Where the databases are.
        executor_id: This replica's stable name in DBOS.
        runs_per_replica: The most runs this replica takes from :data:`RUNS_QUEUE` at
            once (DBOS's ``worker_concurrency``); the others wait for it or another replica.
    """
    global _CURRENT
    _CURRENT = engine
    DBOS(config=dbos_config(settings, executor_id))
    DBOS.launch()
    await DBOS.register_queue_async(
        RUNS_QUEUE, polling_interval_sec=QUEUE_POLL_SECONDS, worker_concurrency=runs_per_replica
    )


async def shutdown() -> None:
    """Stops DBOS; unfinished workflows go on at the next launch.

    DBOS makes its own thread pool the event loop's default executor (for
    ``asyncio.to_thread``) and shuts that pool down here, so the loop gets a fresh
    default executor for whatever still runs on it.
    """
    global _CURRENT
    DBOS.destroy(workflow_completion_timeout_sec=0)
    asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor())
    _CURRENT = None


async def enqueue(tenant_id: str, run_id: str) -> None:
    """Makes a run durable in the engine (idempotent: the run ID is the DBOS workflow ID)."""
    queue = await DBOS.retrieve_queue_async(RUNS_QUEUE)
    assert queue is not None, "registered at launch"
    with SetWorkflowID(run_id):
        await queue.enqueue_async(run_workflow, tenant_id, run_id)


async def cancel_steps(run_id: str, step_ids: list[str]) -> None:
    """Stops the DBOS workflows of a run's steps in progress; the run's workflow then compensates."""
    for step_id in step_ids:
        try:
            await DBOS.cancel_workflow_async(f"{run_id}/{step_id}")
        except DBOSException:
            pass  # not started yet: the run's workflow sees the cancellation first


async def wake(run_id: str, signal_name: str, request_id: str) -> None:
    """Wakes the step that waits for a signal, if it waits already (it reads kept signals when it starts)."""
    try:
        await DBOS.send_async(
            f"{run_id}/{signal_name}", request_id, topic=signal_name, idempotency_key=request_id
        )
    except DBOSException:
        pass  # the step has not started: it takes the kept signal when it does


# Steps: everything that touches the world -----------------------------------------------------


@DBOS.step(name="orchestrall.workflow.load")
async def _load(tenant_id: str, run_id: str) -> dict[str, Any]:
    engine = current()
    run = await engine.db.read(tenant_id, store.get_run_by_id, run_id)
    assert run is not None, f"run {run_id} is not stored"
    revision = await engine.db.read(tenant_id, store.get_revision, run.workflow_id, run.revision_id)
    assert revision is not None
    return {
        "workflow_id": run.workflow_id,
        "input": run.input,
        "definition": revision.definition,
        "ended": run.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED),
        "outcome": {
            "state": run.state,
            "output": run.output,
            "error_reason": run.error_reason,
            "error_message": run.error_message,
        },
    }


#: The events that end a run, and the state each leaves it in.
_RUN_ENDS = {
    history.RUN_SUCCEEDED: RunState.SUCCEEDED,
    history.RUN_FAILED: RunState.FAILED,
    history.RUN_CANCELLED: RunState.CANCELLED,
}


@DBOS.step(name="orchestrall.workflow.emit")
async def _emit(tenant_id: str, run_id: str, kind: str, step_id: str, data: dict[str, Any]) -> bool:
    """Appends an event; returns whether the run's cancellation was requested."""
    key = f"{DBOS.workflow_id}#{DBOS.step_id}"
    engine = current()
    run = await engine.db.write(tenant_id, store.append_event, run_id, kind, step_id, data, key, utcnow())
    if engine.outcomes is not None and kind in _RUN_ENDS:
        engine.outcomes.ended(_RUN_ENDS[kind])
    return run is not None and run.cancel_time is not None


@DBOS.step(name="orchestrall.workflow.cancel_requested")
async def _cancel_requested(tenant_id: str, run_id: str) -> bool:
    run = await current().db.read(tenant_id, store.get_run_by_id, run_id)
    return run is not None and run.cancel_time is not None


@DBOS.step(name="orchestrall.workflow.now")
async def _now() -> float:
    return utcnow().timestamp()


@DBOS.step(name="orchestrall.workflow.render")
async def _render(tenant_id: str, template: str, context: dict[str, Any]) -> Outcome:
    engine = current()
    try:
        text = await engine.sandbox.run(
            templates.render, template, context, timeout=engine.template_timeout, owner=tenant_id
        )
    except templates.TemplateProblem as problem:
        return {"error_reason": "TEMPLATE_FAILED", "error_message": str(problem)}
    except SandboxTimeout:
        return {
            "error_reason": "TEMPLATE_TIMEOUT",
            "error_message": f"the template took longer than {engine.template_timeout:g} s to render",
        }
    except SandboxFailed:
        return {"error_reason": "TEMPLATE_FAILED", "error_message": "the template could not be rendered"}
    return {"output": text}


@DBOS.step(name="orchestrall.workflow.evaluate")
async def _evaluate(expression: str, variables: dict[str, Any], want: str) -> Outcome:
    kinds: dict[str, type] = {"bool": bool, "list": list, "timestamp": dt.datetime}
    try:
        value = expressions.evaluate(expression, variables, kinds[want])
    except expressions.ExpressionProblem as problem:
        return {"error_reason": "EXPRESSION_FAILED", "error_message": f"{expression!r} {problem}"}
    return {"output": value.timestamp() if isinstance(value, dt.datetime) else value}


def _failure(error: grpc.aio.AioRpcError) -> Outcome:
    reason, message = peer_failure(error, "agent")
    return {"error_reason": reason, "error_message": message}


@DBOS.step(name="orchestrall.workflow.create_agent_run")
async def _create_agent_run(tenant_id: str, agent: str, text: str, request_id: str) -> Outcome:
    engine = current()
    try:
        run = await engine.agents.CreateRun(
            agent_pb.CreateRunRequest(parent=agent, run=agent_res.Run(input=text), request_id=request_id),
            timeout=engine.clients.timeout,
            metadata=MeshClients.for_tenant(tenant_id),
        )
    except grpc.aio.AioRpcError as error:
        return _failure(error)
    return {"output": run.name}


@DBOS.step(name="orchestrall.workflow.wait_agent_run")
async def _wait_agent_run(tenant_id: str, name: str, seconds: float) -> Outcome:
    """Waits up to ``seconds`` for an agent run; ``output`` is ``{state, output, error}``."""
    engine = current()
    timeout = Duration()
    timeout.FromTimedelta(dt.timedelta(seconds=max(min(seconds, WAIT_SECONDS), 0)))
    try:
        run = await engine.agents.WaitRun(
            agent_pb.WaitRunRequest(name=name, timeout=timeout),
            timeout=WAIT_SECONDS + engine.clients.timeout,
            metadata=MeshClients.for_tenant(tenant_id),
        )
    except grpc.aio.AioRpcError as error:
        return _failure(error)
    return {
        "output": {
            "state": agent_res.Run.State.Name(run.state),
            "output": run.output,
            "error": run.error.message,
        }
    }


@DBOS.step(name="orchestrall.workflow.cancel_agent_run")
async def _cancel_agent_run(tenant_id: str, name: str) -> None:
    await _stop_agent_run(current(), tenant_id, name)


async def _stop_agent_run(engine: Engine, tenant_id: str, name: str) -> None:
    """Cancels an agent run; one that ended already, or an agent service away, leaves nothing to stop."""
    try:
        await engine.agents.CancelRun(
            agent_pb.CancelRunRequest(name=name),
            timeout=engine.clients.timeout,
            metadata=MeshClients.for_tenant(tenant_id),
        )
    except grpc.aio.AioRpcError as error:
        log.info("agent run %s was not cancelled: %s", name, error.details())


@DBOS.step(name="orchestrall.workflow.call_tool")
async def _call_tool(tenant_id: str, tool: str, arguments: dict[str, Any], seconds: float) -> Outcome:
    engine = current()
    request = agent_pb.CallToolRequest(name=tool, parent=f"tenants/{tenant_id}")
    request.arguments.update(arguments)
    try:
        answer = await engine.agents.CallTool(
            request, timeout=seconds, metadata=MeshClients.for_tenant(tenant_id)
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return {
                "error_reason": "STEP_TIMEOUT",
                "error_message": f"the tool took longer than {seconds:g} s",
            }
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return {"error_reason": "TOOL_FAILED", "error_message": error.details() or "the tool refused"}
        return _failure(error)
    return {"output": json_format.MessageToDict(answer)["result"] if answer.HasField("result") else None}


@DBOS.step(name="orchestrall.workflow.take_signal")
async def _take_signal(tenant_id: str, run_id: str, name: str) -> dict[str, Any] | None:
    key = f"{DBOS.workflow_id}#signal"
    return await current().db.write(tenant_id, store.take_signal, run_id, name, key)


@DBOS.step(name="orchestrall.workflow.start_child_run")
async def _start_child_run(
    tenant_id: str, workflow_name: str, text: str, request_id: str, trigger: str
) -> Outcome:
    workflow_id = workflow_name.rsplit("/", 1)[-1]
    run, _ = await current().db.write(
        tenant_id, store.start_run, store.new_run(tenant_id, workflow_id, text, request_id, trigger)
    )
    if run is None:
        return {"error_reason": "SUB_WORKFLOW_FAILED", "error_message": f"{workflow_name} does not exist"}
    return {"output": run.id}


# Workflows ----------------------------------------------------------------------------------


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _seconds(duration: Duration | None, default: float) -> float:
    return duration.ToTimedelta().total_seconds() if duration is not None and duration.ByteSize() else default


def _step_timeout(step: res.Workflow.Step) -> float:
    return _seconds(
        step.timeout if step.HasField("timeout") else None, definition.DEFAULT_STEP_TIMEOUT_SECONDS
    )


def _backoff(policy: res.Workflow.RetryPolicy, attempt: int, key: str) -> float:
    """Full-jitter backoff before attempt ``attempt + 1``; the "random" part is a hash, so a replay agrees."""
    initial = _seconds(policy.initial_backoff if policy.HasField("initial_backoff") else None, 1.0)
    ceiling = _seconds(policy.max_backoff if policy.HasField("max_backoff") else None, 60.0)
    multiplier = policy.backoff_multiplier or 2.0
    bound = min(ceiling, initial * multiplier ** (attempt - 1))
    fraction = int.from_bytes(hashlib.sha256(f"{key}:{attempt}".encode()).digest()[:8]) / 2**64
    return bound * fraction


def _retryable(policy: res.Workflow.RetryPolicy, reason: str) -> bool:
    if policy.retryable_reasons:
        return reason in policy.retryable_reasons
    return reason in TRANSIENT or reason.endswith("_UNAVAILABLE")


async def _with_retries(
    tenant_id: str,
    run_id: str,
    step: res.Workflow.Step,
    perform: Callable[[int], Awaitable[Outcome]],
    *,
    events: bool = True,
) -> Outcome:
    """Runs attempts of a step until one succeeds, a failure is not retryable, or attempts run out."""
    policy = step.retry_policy
    attempts = max(policy.max_attempts, 1)
    attempt = 1
    while True:
        outcome = await perform(attempt)
        reason = outcome.get("error_reason")
        if reason is None or attempt >= attempts or not _retryable(policy, reason):
            return outcome
        backoff = _backoff(policy, attempt, f"{run_id}/{step.id}")
        if events:
            await _emit(
                tenant_id,
                run_id,
                history.STEP_RETRIED,
                step.id,
                {"attempt": attempt, "error_reason": reason, "backoff_seconds": round(backoff, 3)},
            )
        await DBOS.sleep_async(backoff)
        attempt += 1


async def _ride_out(outcome: Outcome, deadline: float) -> bool:
    """Whether to ask the agent service again: it could not take the call now, and the attempt has time left.

    A restarting agent service costs the attempt nothing (the run it was making
    goes on, or its lease runs out and it ends), nor does a tenant at its limit of
    runs in progress (``TOO_MANY_RUNS``: the step waits for a place); asking again
    is idempotent.
    """
    reason = outcome.get("error_reason", "")
    if not (reason.endswith("_UNAVAILABLE") or reason in WAIT_FOR_PLACE) or await _now() >= deadline:
        return False
    await DBOS.sleep_async(PEER_RETRY_SECONDS)
    return True


async def _agent_attempt(
    tenant_id: str,
    run_id: str,
    key: str,
    task: res.Workflow.AgentRun,
    context: dict[str, Any],
    attempt: int,
    timeout: float,
    step_id: str | None,
) -> Outcome:
    rendered = await _render(tenant_id, task.input_template, context)
    if "error_reason" in rendered:
        return rendered
    deadline = await _now() + timeout
    while True:  # the same request ID each time: the agent service makes the run once
        created = await _create_agent_run(tenant_id, task.agent, rendered["output"], f"{key}:{attempt}")
        if not await _ride_out(created, deadline):
            break
    if "error_reason" in created:
        return created
    name = created["output"]
    if step_id is not None:
        await _emit(
            tenant_id,
            run_id,
            history.STEP_STARTED,
            step_id,
            {"attempt": attempt, "input": rendered["output"], "agent_run": name},
        )
    while True:
        remaining = deadline - await _now()
        waited = await _wait_agent_run(tenant_id, name, remaining)
        if await _ride_out(waited, deadline):
            continue
        if "error_reason" in waited:
            return waited
        state = waited["output"]["state"]
        if state == "STATE_SUCCEEDED":
            return {"output": waited["output"]["output"]}
        if state not in ("STATE_RUNNING", "STATE_REQUIRES_ACTION"):
            return {
                "error_reason": "AGENT_RUN_FAILED",
                "error_message": waited["output"]["error"] or f"the agent run ended {state}",
            }
        if remaining <= 0:
            await _cancel_agent_run(tenant_id, name)
            return {
                "error_reason": "STEP_TIMEOUT",
                "error_message": f"the agent run took longer than {timeout:g} s",
            }
        if state == "STATE_REQUIRES_ACTION":
            await DBOS.sleep_async(APPROVAL_POLL_SECONDS)


async def _tool_attempt(
    tenant_id: str,
    run_id: str,
    task: res.Workflow.ToolCall,
    context: dict[str, Any],
    attempt: int,
    timeout: float,
    step_id: str | None,
) -> Outcome:
    arguments: Any = {}
    text = "{}"
    if task.arguments_template:
        rendered = await _render(tenant_id, task.arguments_template, context)
        if "error_reason" in rendered:
            return rendered
        text = rendered["output"]
        arguments = _json_or_none(text)
        if not isinstance(arguments, dict):
            return {
                "error_reason": "TEMPLATE_FAILED",
                "error_message": "the arguments do not render a JSON object",
            }
    if step_id is not None:
        await _emit(tenant_id, run_id, history.STEP_STARTED, step_id, {"attempt": attempt, "input": text})
    return await _call_tool(tenant_id, task.tool, arguments, timeout)


async def _task(
    tenant_id: str,
    run_id: str,
    key: str,
    task: res.Workflow.AgentRun | res.Workflow.ToolCall,
    context: dict[str, Any],
    attempt: int,
    timeout: float,
    step_id: str | None,
) -> Outcome:
    if isinstance(task, res.Workflow.AgentRun):
        return await _agent_attempt(tenant_id, run_id, key, task, context, attempt, timeout, step_id)
    return await _tool_attempt(tenant_id, run_id, task, context, attempt, timeout, step_id)


async def _approval(tenant_id: str, run_id: str, step: res.Workflow.Step, context: dict[str, Any]) -> Outcome:
    approval = step.approval
    prompt = ""
    if approval.prompt_template:
        rendered = await _render(tenant_id, approval.prompt_template, context)
        if "error_reason" in rendered:
            return rendered
        prompt = rendered["output"]
    timeout = _seconds(
        approval.timeout if approval.HasField("timeout") else None,
        definition.DEFAULT_APPROVAL_TIMEOUT_SECONDS,
    )
    await _emit(
        tenant_id, run_id, history.APPROVAL_REQUESTED, step.id, {"prompt": prompt, "timeout_seconds": timeout}
    )
    deadline = await _now() + timeout
    while True:
        payload = await _take_signal(tenant_id, run_id, step.id)
        if payload is not None:
            decision = {
                "approved": bool(payload.get("approved")),
                "comment": str(payload.get("comment", "")),
                "decided_by": str(payload.get("decided_by", "")),  # the signal's sender
            }
            break
        remaining = deadline - await _now()
        if remaining <= 0:
            decision = {"approved": approval.approve_on_timeout, "comment": "", "decided_by": "timeout"}
            break
        await DBOS.recv_async(topic=step.id, timeout_seconds=remaining)
    await _emit(tenant_id, run_id, history.APPROVAL_GIVEN, step.id, decision)
    if not decision["approved"]:
        return {
            "error_reason": "APPROVAL_REJECTED",
            "error_message": decision["comment"] or "the approval was rejected",
        }
    return {"output": decision}


async def _wait(tenant_id: str, run_id: str, step: res.Workflow.Step, context: dict[str, Any]) -> Outcome:
    wait = step.wait
    if wait.WhichOneof("until") == "duration":
        seconds = wait.duration.ToTimedelta().total_seconds()
    else:
        until = await _evaluate(wait.time, context, "timestamp")
        if "error_reason" in until:
            return until
        seconds = max(until["output"] - await _now(), 0.0)
    await _emit(tenant_id, run_id, history.TIMER_STARTED, step.id, {"seconds": round(seconds, 3)})
    await DBOS.sleep_async(seconds)
    fired = await _now()
    await _emit(tenant_id, run_id, history.TIMER_FIRED, step.id, {})
    return {"output": dt.datetime.fromtimestamp(fired, dt.UTC).isoformat()}


async def _notification(
    tenant_id: str,
    run_id: str,
    step_id: str,
    notification: res.Workflow.Notification,
    context: dict[str, Any],
    key: str,
) -> Outcome:
    """Renders the message; a channel that names a notification channel gets it through ``SendNotification``.

    The delivery's ``request_id`` is ``key`` (the step's, or its compensation's), so a
    step executed again sends nothing twice. A delivery whose first attempt failed is
    retried by the agent service; only one that failed for good fails the step.
    """
    rendered = await _render(tenant_id, notification.message_template, context)
    if "error_reason" in rendered:
        return rendered
    data: dict[str, Any] = {"channel": notification.channel, "message": rendered["output"]}
    if definition.is_notification_channel(notification.channel):
        sent = await _send_notification(tenant_id, notification.channel, rendered["output"], key)
        if "error_reason" in sent:
            return sent
        data |= sent["output"]
    await _emit(tenant_id, run_id, history.NOTIFICATION_SENT, step_id, data)
    return {"output": rendered["output"]}


@DBOS.step(name="orchestrall.workflow.send_notification")
async def _send_notification(tenant_id: str, channel: str, message: str, request_id: str) -> Outcome:
    """Sends ``message`` on ``channel`` (``SendNotification``); ``output``: the delivery and its state."""
    engine = current()
    try:
        delivery = await engine.agents.SendNotification(
            agent_pb.SendNotificationRequest(name=channel, message=message, request_id=request_id),
            timeout=engine.clients.timeout,
            metadata=MeshClients.for_tenant(tenant_id),
        )
    except grpc.aio.AioRpcError as error:
        return _failure(error)
    state = agent_res.NotificationDelivery.State.Name(delivery.state)
    if delivery.state == agent_res.NotificationDelivery.STATE_FAILED:
        return {
            "error_reason": "NOTIFICATION_FAILED",
            "error_message": delivery.last_error or "delivery failed",
        }
    return {"output": {"delivery": delivery.name, "state": state}}


async def _sub_workflow(
    tenant_id: str, run_id: str, step: res.Workflow.Step, context: dict[str, Any]
) -> Outcome:
    rendered = await _render(tenant_id, step.sub_workflow.input_template, context)
    if "error_reason" in rendered:
        return rendered
    parent_name = f"tenants/{tenant_id}/workflows/{context['workflow_id']}/runs/{run_id}"
    started = await _start_child_run(
        tenant_id, step.sub_workflow.workflow, rendered["output"], f"{run_id}:{step.id}", parent_name
    )
    if "error_reason" in started:
        return started
    child = started["output"]
    await _emit(
        tenant_id,
        run_id,
        history.STEP_STARTED,
        step.id,
        {
            "attempt": 1,
            "input": rendered["output"],
            "agent_run": f"{step.sub_workflow.workflow}/runs/{child}",
        },
    )
    with SetWorkflowID(child):
        handle = await DBOS.start_workflow_async(run_workflow, tenant_id, child)
    result = await _result(handle) or {"state": RunState.CANCELLED}
    if result["state"] != RunState.SUCCEEDED:
        return {
            "error_reason": "SUB_WORKFLOW_FAILED",
            "error_message": result.get("error_message") or "the child run failed",
        }
    return {"output": result["output"]}


async def _map(tenant_id: str, run_id: str, step: res.Workflow.Step, context: dict[str, Any]) -> Outcome:
    items = await _evaluate(step.map.items, context, "list")
    if "error_reason" in items:
        return items
    values = items["output"]
    if len(values) > MAX_MAP_ITEMS:
        return {
            "error_reason": "EXPRESSION_FAILED",
            "error_message": f"{len(values)} items; at most {MAX_MAP_ITEMS}",
        }
    await _emit(tenant_id, run_id, history.STEP_STARTED, step.id, {"attempt": 1, "input": json.dumps(values)})
    limit = step.map.max_concurrency or 5
    step_json = json_format.MessageToDict(step, preserving_proto_field_name=True)
    outputs: list[Any] = [None] * len(values)
    running: dict[str, int] = {}
    handles: dict[str, Any] = {}
    next_index = 0
    while next_index < len(values) or running:
        while next_index < len(values) and len(running) < limit:
            item_id = f"{run_id}/{step.id}/{next_index}"
            with SetWorkflowID(item_id):
                handles[item_id] = await DBOS.start_workflow_async(
                    run_map_item,
                    tenant_id,
                    run_id,
                    step_json,
                    context | {"item": values[next_index], "index": next_index},
                )
            running[item_id] = next_index
            next_index += 1
        done = await DBOS.wait_first_async([handles[i] for i in running], polling_interval_sec=POLL_SECONDS)
        index = running.pop(done.workflow_id)
        outcome = await _result(done) or {
            "error_reason": "CANCELLED",
            "error_message": "the item was stopped",
        }
        if "error_reason" in outcome:
            for item_id in running:
                await DBOS.cancel_workflow_async(item_id)
            return {
                "error_reason": outcome["error_reason"],
                "error_message": f"item {index}: {outcome['error_message']}",
            }
        outputs[index] = outcome["output"]
    return {"output": outputs}


@DBOS.workflow(name="orchestrall.workflow.map_item")
async def run_map_item(
    tenant_id: str, run_id: str, step_json: dict[str, Any], context: dict[str, Any]
) -> Outcome:
    """One item of a map step: its task with the step's retry policy."""
    step = json_format.ParseDict(step_json, res.Workflow.Step())
    task = step.map.agent_run if step.map.HasField("agent_run") else step.map.tool_call
    key = f"{run_id}:{step.id}:{context['index']}"
    timeout = _step_timeout(step)
    return await _with_retries(
        tenant_id,
        run_id,
        step,
        lambda attempt: _task(tenant_id, run_id, key, task, context, attempt, timeout, None),
        events=False,
    )


@DBOS.workflow(name="orchestrall.workflow.step")
async def run_step(
    tenant_id: str, run_id: str, step_json: dict[str, Any], context: dict[str, Any]
) -> Outcome:
    """One step of a run, from its first attempt to its end; appends the step's events."""
    step = json_format.ParseDict(step_json, res.Workflow.Step())
    kind = definition.kind(step)
    key = f"{run_id}:{step.id}"
    timeout = _step_timeout(step)
    if kind in ("agent_run", "tool_call"):
        task = getattr(step, kind)
        outcome = await _with_retries(
            tenant_id,
            run_id,
            step,
            lambda attempt: _task(tenant_id, run_id, key, task, context, attempt, timeout, step.id),
        )
    elif kind == "approval":
        outcome = await _approval(tenant_id, run_id, step, context)
    elif kind == "wait":
        outcome = await _wait(tenant_id, run_id, step, context)
    elif kind == "notification":
        outcome = await _notification(tenant_id, run_id, step.id, step.notification, context, key)
    elif kind == "sub_workflow":
        outcome = await _sub_workflow(tenant_id, run_id, step, context)
    else:  # map
        outcome = await _with_retries(
            tenant_id, run_id, step, lambda attempt: _map(tenant_id, run_id, step, context)
        )
    if "error_reason" in outcome:
        await _emit(tenant_id, run_id, history.STEP_FAILED, step.id, outcome)
    else:
        await _emit(
            tenant_id, run_id, history.STEP_SUCCEEDED, step.id, {"output": json.dumps(outcome["output"])}
        )
    return outcome


@DBOS.workflow(name="orchestrall.workflow.compensation")
async def run_compensation(
    tenant_id: str, run_id: str, step_json: dict[str, Any], context: dict[str, Any]
) -> Outcome:
    """Undoes one succeeded step (its ``compensation``), with the step's retry policy."""
    step = json_format.ParseDict(step_json, res.Workflow.Step())
    action = step.compensation.WhichOneof("action")
    await _emit(tenant_id, run_id, history.COMPENSATION_STARTED, step.id, {"action": action})
    if action == "notification":
        key = f"{run_id}:{step.id}:compensation"
        outcome = await _notification(
            tenant_id, run_id, step.id, step.compensation.notification, context, key
        )
    else:
        task = getattr(step.compensation, action)
        key = f"{run_id}:{step.id}:compensation"
        timeout = _step_timeout(step)
        outcome = await _with_retries(
            tenant_id,
            run_id,
            step,
            lambda attempt: _task(tenant_id, run_id, key, task, context, attempt, timeout, None),
            events=False,
        )
    kind = history.COMPENSATION_FAILED if "error_reason" in outcome else history.COMPENSATION_SUCCEEDED
    await _emit(tenant_id, run_id, kind, step.id, {k: v for k, v in outcome.items() if k != "output"})
    return outcome


@DBOS.workflow(name="orchestrall.workflow.timer")
async def run_timer(seconds: float) -> str:
    """Sleeps durably for a run's timeout; the run's workflow waits on it beside its steps."""
    await DBOS.sleep_async(seconds)
    return "fired"


async def _result(handle: Any) -> Any:
    """The result of an ended child workflow; None when it was cancelled.

    A cancelled child's coroutine may still be asleep in this process, and its
    handle's ``get_result`` would wait for it; its status says at once.
    """
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    if status is not None and status.status == "CANCELLED":
        return None
    try:
        return await handle.get_result()
    except DBOSAwaitedWorkflowCancelledError:
        return None


@dataclasses.dataclass
class _Progress:
    """Where a run's workflow is: each step's state, the outputs, the order steps ended in."""

    states: dict[str, str]
    outputs: dict[str, Any]
    branches: dict[str, bool]
    ended: list[str]


def _context(
    graph: definition.Graph, step_id: str, base: dict[str, Any], progress: _Progress
) -> dict[str, Any]:
    ancestors = graph.ancestors(step_id)
    steps = {sid: {"output": progress.outputs[sid]} for sid in ancestors if sid in progress.outputs}
    return base | {"steps": steps}


def _skipped(graph: definition.Graph, step: res.Workflow.Step, progress: _Progress) -> bool:
    """Whether a step whose dependencies all ended is skipped (see ``Workflow`` in the contract)."""
    for dependency in step.depends_on:
        source = graph.steps[dependency]
        if dependency in progress.branches:
            taken = progress.branches[dependency]
            if (taken and step.id in source.condition.else_steps) or (
                not taken and step.id in source.condition.then_steps
            ):
                return True
    return bool(step.depends_on) and all(progress.states[d] == RunState.SKIPPED for d in step.depends_on)


def _waits_long(step: res.Workflow.Step) -> bool:
    """Whether a step waits for a person or a timer of 10 s or more (its end needs no prompt notice)."""
    kind = definition.kind(step)
    if kind == "wait" and step.wait.WhichOneof("until") == "duration":
        return step.wait.duration.ToTimedelta().total_seconds() >= 10 * SLOW_POLL_SECONDS
    return kind in ("approval", "wait")


@DBOS.workflow(name="orchestrall.workflow.run")
async def run_workflow(tenant_id: str, run_id: str) -> dict[str, Any]:
    """One run of a workflow revision, from its first step to its output or its compensation.

    Returns:
        ``{"state", "output", "error_reason", "error_message"}`` (a sub-workflow's
        parent reads it).
    """
    loaded = await _load(tenant_id, run_id)
    workflow = definition.from_json(loaded["definition"])
    graph = definition.Graph.of(workflow)
    base = {
        "input": loaded["input"],
        "input_json": _json_or_none(loaded["input"]),
        "workflow_id": loaded["workflow_id"],
    }
    progress = _Progress({sid: RunState.PENDING for sid in graph.order}, {}, {}, [])
    if loaded["ended"]:  # enqueued again after it ended: nothing to do
        outcome: dict[str, Any] = loaded["outcome"]
        return outcome
    cancelled = await _emit(tenant_id, run_id, history.RUN_STARTED, "", {})
    run_timeout = _seconds(
        workflow.run_timeout if workflow.HasField("run_timeout") else None,
        definition.DEFAULT_RUN_TIMEOUT_SECONDS,
    )
    with SetWorkflowID(f"{run_id}/timeout"):
        timer: Any = await DBOS.start_workflow_async(run_timer, run_timeout)
    running: dict[str, Any] = {}
    failure: Outcome | None = None
    while True:
        changed, started, was_cancelled = True, False, cancelled
        while changed and failure is None and not cancelled:
            changed = False
            for step_id in graph.order:
                step = graph.steps[step_id]
                if progress.states[step_id] != RunState.PENDING:
                    continue
                if any(
                    progress.states[d] not in (RunState.SUCCEEDED, RunState.SKIPPED) for d in step.depends_on
                ):
                    continue
                changed = True
                if _skipped(graph, step, progress):
                    progress.states[step_id] = RunState.SKIPPED
                    await _emit(tenant_id, run_id, history.STEP_SKIPPED, step_id, {})
                elif definition.kind(step) == "condition":
                    outcome = await _evaluate(
                        step.condition.expression, _context(graph, step_id, base, progress), "bool"
                    )
                    if "error_reason" in outcome:
                        progress.states[step_id] = RunState.FAILED
                        await _emit(tenant_id, run_id, history.STEP_FAILED, step_id, outcome)
                        failure = outcome | {"step_id": step_id}
                        break
                    progress.states[step_id] = RunState.SUCCEEDED
                    progress.outputs[step_id] = progress.branches[step_id] = outcome["output"]
                    progress.ended.append(step_id)
                    await _emit(
                        tenant_id,
                        run_id,
                        history.STEP_SUCCEEDED,
                        step_id,
                        {"output": json.dumps(outcome["output"])},
                    )
                else:
                    # Scheduled first, so the history reads in order; a cancellation the append
                    # reports starts nothing more.
                    if await _emit(tenant_id, run_id, history.STEP_SCHEDULED, step_id, {}):
                        progress.states[step_id] = RunState.CANCELLED
                        cancelled = True
                        break
                    progress.states[step_id] = RunState.RUNNING
                    step_json = json_format.MessageToDict(step, preserving_proto_field_name=True)
                    with SetWorkflowID(f"{run_id}/{step_id}"):
                        running[step_id] = await DBOS.start_workflow_async(
                            run_step, tenant_id, run_id, step_json, _context(graph, step_id, base, progress)
                        )
                    started = True
        if started and not cancelled and await _cancel_requested(tenant_id, run_id):
            # A cancellation recorded between a step's scheduling and its start missed that step.
            cancelled = True
        if cancelled and not was_cancelled:
            await cancel_steps(run_id, list(running))
        if not running:
            break
        waiting = all(_waits_long(graph.steps[step_id]) for step_id in running)
        done = await DBOS.wait_first_async(
            [*running.values(), timer], polling_interval_sec=SLOW_POLL_SECONDS if waiting else POLL_SECONDS
        )
        if done.workflow_id == timer.workflow_id:
            failure = failure or {
                "error_reason": "RUN_TIMEOUT",
                "error_message": f"the run took longer than {run_timeout:g} s",
            }
            await cancel_steps(run_id, list(running))
            timer = None
            for step_id in list(running):
                await _stop(tenant_id, run_id, step_id, running.pop(step_id), progress)
            break
        step_id = next(sid for sid, handle in running.items() if handle.workflow_id == done.workflow_id)
        del running[step_id]
        outcome = await _result(done)
        if outcome is None:
            progress.states[step_id] = RunState.CANCELLED
        else:
            if "error_reason" in outcome:
                progress.states[step_id] = RunState.FAILED
                if failure is None and not cancelled:
                    failure = outcome | {"step_id": step_id}
                    await cancel_steps(run_id, list(running))
            else:
                progress.states[step_id] = RunState.SUCCEEDED
                progress.outputs[step_id] = outcome["output"]
                progress.ended.append(step_id)
        if not cancelled and await _cancel_requested(tenant_id, run_id):
            cancelled = True
            await cancel_steps(run_id, list(running))
    if timer is not None:
        await DBOS.cancel_workflow_async(timer.workflow_id)
    return await _finish(tenant_id, run_id, workflow, graph, base, progress, failure, cancelled)


async def _stop(tenant_id: str, run_id: str, step_id: str, handle: Any, progress: _Progress) -> None:
    """Waits for a stopped step's workflow to end; a step that had ended meanwhile keeps its outcome."""
    outcome = await _result(handle)
    if outcome is None:
        progress.states[step_id] = RunState.CANCELLED
        return
    if "error_reason" in outcome:
        progress.states[step_id] = RunState.FAILED
    else:
        progress.states[step_id] = RunState.SUCCEEDED
        progress.outputs[step_id] = outcome["output"]
        progress.ended.append(step_id)


async def _finish(
    tenant_id: str,
    run_id: str,
    workflow: res.Workflow,
    graph: definition.Graph,
    base: dict[str, Any],
    progress: _Progress,
    failure: Outcome | None,
    cancelled: bool,
) -> dict[str, Any]:
    """Compensates a failed or cancelled run, or renders a succeeded run's output; appends its last event."""
    if failure is None and not cancelled:
        if workflow.output_template:
            rendered = await _render(
                tenant_id,
                workflow.output_template,
                base | {"steps": {s: {"output": o} for s, o in progress.outputs.items()}},
            )
            if "error_reason" in rendered:
                failure = rendered
        if failure is None:
            last = progress.ended[-1] if progress.ended else None
            output = (
                rendered["output"]
                if workflow.output_template
                else _as_text(progress.outputs.get(last, ""))
                if last
                else ""
            )
            await _emit(tenant_id, run_id, history.RUN_SUCCEEDED, "", {"output": output})
            return {"state": RunState.SUCCEEDED, "output": output}
    await _cancel_agent_runs(tenant_id, run_id, progress)
    for step_id in reversed(progress.ended):
        step = graph.steps[step_id]
        if not step.HasField("compensation"):
            continue
        context = _context(graph, step_id, base, progress) | {"output": progress.outputs[step_id]}
        with SetWorkflowID(f"{run_id}/{step_id}/compensation"):
            handle = await DBOS.start_workflow_async(
                run_compensation,
                tenant_id,
                run_id,
                json_format.MessageToDict(step, preserving_proto_field_name=True),
                context,
            )
        await handle.get_result()
    if cancelled:
        data = {"error_reason": "CANCELLED", "error_message": "the run was cancelled"}
        await _emit(tenant_id, run_id, history.RUN_CANCELLED, "", data)
        return {"state": RunState.CANCELLED, **data}
    assert failure is not None
    where = f"step {failure['step_id']}: " if "step_id" in failure else ""
    data = {"error_reason": failure["error_reason"], "error_message": where + failure["error_message"]}
    await _emit(tenant_id, run_id, history.RUN_FAILED, "", data)
    return {"state": RunState.FAILED, **data}


@DBOS.step(name="orchestrall.workflow.cancel_agent_runs")
async def _cancel_agent_runs_step(tenant_id: str, run_id: str, step_ids: list[str]) -> None:
    engine = current()
    run = await engine.db.read(tenant_id, store.get_run_by_id, run_id)
    if run is None:
        return
    for record in run.steps:  # a sub-workflow step's `agent_run` names its child run instead
        if record["step_id"] in step_ids and "/agents/" in record.get("agent_run", ""):
            await _stop_agent_run(engine, tenant_id, record["agent_run"])


async def _cancel_agent_runs(tenant_id: str, run_id: str, progress: _Progress) -> None:
    stopped = [sid for sid, state in progress.states.items() if state == RunState.CANCELLED]
    if stopped:
        await _cancel_agent_runs_step(tenant_id, run_id, stopped)
