"""Replaying a run from its recorded events, without the model and without calling tools.

Every model reply of a run is recorded (its ``model_call`` event, after the
``text_delta`` events it streamed) and so is every tool result (``tool_call_finished``).
A replay runs the agent loop again (:func:`services.agent.runner.run_agent`) with
:class:`RecordedModel` in place of the endpoint, which streams the recorded replies in
order, and stand-ins (:class:`RecordedTool`) in place of the tools, which return the recorded
results; the decisions a person made on approvals are read back from the results of
those calls. A platform that behaves as it did produces the same events, the same tool
calls and the same output; :func:`compare` says where it does not.

What a replay cannot see: the prompt the model got (it is not recorded; the recorded
model answers whatever it is asked), and the time things took.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2 as httpx  # the HTTP library the openai client is built on
from jsonschema import Draft202012Validator
from openai.types.chat import ChatCompletionChunk

from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import tools as catalog
from services.agent.events import LiveRun
from services.agent.knowledge import tool as knowledge_tool
from services.agent.models import RunRow, RunState
from services.agent.routing import ModelRouter, OpenedStream
from services.agent.runner import (
    REJECTION,
    AgentSpec,
    Checkpoint,
    Decision,
    Outcome,
    RunFailed,
    RunTool,
    run_agent,
)
from services.kit.metrics import ModelMetrics


class ReplayDiverged(Exception):
    """The replayed loop asked for more than the run recorded (another model call, an unknown call)."""


@dataclass
class _Reply:
    """One recorded model call and the text it streamed; ``call`` is None for a call stopped midway."""

    call: res.ModelCall | None
    deltas: list[str] = field(default_factory=list)


class RecordedModel:
    """Stands in for the model router: streams a run's recorded replies, one per call, in order.

    Args:
        events: The run's recorded events, in order.
    """

    base_url = httpx.URL("replay://recorded")
    #: A replay makes no model call, so it records none in the metrics (the router's attribute).
    metrics: ModelMetrics | None = None

    def __init__(self, events: Iterable[res.RunEvent]) -> None:
        self._replies: deque[_Reply] = deque()
        deltas: list[str] = []
        for event in events:
            kind = event.WhichOneof("event")
            if kind == "text_delta":
                deltas.append(event.text_delta.text)
            elif kind == "model_call":
                self._replies.append(_Reply(event.model_call, deltas))
                deltas = []
        if deltas:  # the run was stopped (cancelled) while the model was streaming
            self._replies.append(_Reply(None, deltas))
        self.chat = self  # the client's ``chat.completions.create``
        self.completions = self

    async def create(self, **request: Any) -> AsyncIterator[ChatCompletionChunk]:
        """Returns the next recorded reply as a stream of Chat Completions chunks.

        Raises:
            ReplayDiverged: Every recorded reply was used already.
        """
        if not self._replies:
            raise ReplayDiverged("the replayed run called the model more often than the recorded one")
        return self._chunks(self._replies.popleft())

    async def _chunks(self, reply: _Reply) -> AsyncIterator[ChatCompletionChunk]:
        call = reply.call
        for text in reply.deltas:
            yield _chunk(call.model if call else "", {"content": text})
        if call is None:
            raise ReplayDiverged("the recording stops in the middle of this model call")
        if call.tool_calls:
            parts = [
                {
                    "index": i,
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.tool, "arguments": c.arguments},
                }
                for i, c in enumerate(call.tool_calls)
            ]
            yield _chunk(call.model, {"tool_calls": parts})
        yield _chunk(call.model, {}, finish_reason=call.finish_reason or "stop")
        usage = {
            "prompt_tokens": call.input_tokens,
            "completion_tokens": call.output_tokens,
            "total_tokens": call.input_tokens + call.output_tokens,
        }
        yield ChatCompletionChunk.model_validate(
            {
                "id": "replay",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": call.model,
                "choices": [],
                "usage": usage,
            }
        )

    def endpoint_url(self, model: str) -> httpx.URL:
        """Returns ``replay://recorded``, the "endpoint" of every replayed call (the router's method)."""
        return self.base_url

    async def open(self, request: Mapping[str, Any]) -> OpenedStream:
        """Opens the next recorded reply as :class:`~services.agent.routing.ModelRouter` opens a call.

        The route, endpoint and attempts are the recorded call's, so the replayed
        ``model_call`` events say what the recorded ones said.

        Raises:
            ReplayDiverged: Every recorded reply was used already.
        """
        call = self._replies[0].call if self._replies else None
        chunks = aiter(await self.create(**request))
        first = await anext(chunks, None)
        if call is None:
            return OpenedStream("", "", str(request["model"]), 1, first, chunks)
        return OpenedStream(call.route, call.endpoint, call.model, call.attempts, first, chunks)

    def unused(self) -> int:
        """Returns how many recorded replies the replay did not ask for."""
        return len(self._replies)


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {
            "id": "replay",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def _canonical(arguments: str | Mapping[str, Any]) -> str | None:
    """Arguments as canonical JSON text; None for text that is not JSON."""
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class RecordedTool:
    """Stands in for a tool: returns the result the recorded call with the same arguments got.

    Attributes:
        tool: The tool it stands in for (its name, function name, description, schema).
        results: The recorded ``(result, failed)`` of its calls, by canonical arguments,
            oldest first. Calls the loop itself answered (bad arguments, rejections) are
            among them but never asked for, since a replayed loop answers them again itself.
    """

    tool: RunTool
    results: dict[str, deque[tuple[str, bool]]] = field(default_factory=lambda: defaultdict(deque))

    @property
    def name(self) -> str:
        """The tool's resource name."""
        return self.tool.name

    @property
    def function_name(self) -> str:
        """The tool's function name."""
        return self.tool.function_name

    @property
    def description(self) -> str:
        """The tool's description."""
        return self.tool.description

    @property
    def parameters(self) -> dict[str, Any]:
        """The tool's JSON Schema."""
        return self.tool.parameters

    @property
    def validator(self) -> Draft202012Validator:
        """The tool's validator: a replayed call is checked as the recorded one was."""
        return self.tool.validator

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Returns the recorded result of the call with these arguments.

        Raises:
            ToolError: The recorded call failed (with its recorded message).
            ReplayDiverged: No recorded call of the tool had these arguments.
        """
        recorded = self.results.get(_canonical(arguments) or "")
        if not recorded:
            raise ReplayDiverged(f"the recorded run made no call of {self.tool.name} with {arguments}")
        result, failed = recorded.popleft()
        if failed:
            raise catalog.ToolError(json.loads(result)["error"])
        return json.loads(result)


def recorded_tools(tools: Sequence[RunTool], events: Iterable[res.RunEvent]) -> list[RecordedTool]:
    """Returns stand-ins for ``tools`` holding the results their calls got in ``events``."""
    by_name = {tool.name: RecordedTool(tool) for tool in tools}
    for event in events:
        if event.WhichOneof("event") == "tool_call_finished":
            finished = event.tool_call_finished
            key = _canonical(finished.arguments)
            if finished.tool in by_name and key is not None:
                by_name[finished.tool].results[key].append((finished.result, finished.failed))
    return list(by_name.values())


def recorded_decisions(events: Iterable[res.RunEvent]) -> dict[str, Decision]:
    """Returns the decision each call that waited for approval got, by call ID, from its recorded result."""
    events = list(events)
    waited = {
        c.id
        for e in events
        if e.WhichOneof("event") == "requires_action"
        for c in e.requires_action.tool_calls
    }
    decisions = {}
    for event in events:
        if event.WhichOneof("event") == "tool_call_finished" and event.tool_call_finished.id in waited:
            finished = event.tool_call_finished
            error = json.loads(finished.result).get("error", "") if finished.failed else ""
            if isinstance(error, str) and error.startswith(REJECTION):
                decisions[finished.id] = Decision(False, error.removeprefix(REJECTION))
            else:
                decisions[finished.id] = Decision(True, "", finished.arguments)
    return decisions


def _comparable(event: res.RunEvent) -> res.RunEvent:
    """The event without what a replay cannot reproduce: its time, and a model call's latency."""
    copy = res.RunEvent()
    copy.CopyFrom(event)
    copy.ClearField("create_time")
    if copy.WhichOneof("event") == "model_call":
        copy.model_call.ClearField("latency")
    if copy.WhichOneof("event") == "run_finished":
        for name in ("create_time", "end_time"):
            copy.run_finished.ClearField(name)
    return copy


def compare(recorded: Sequence[res.RunEvent], replayed: Sequence[res.RunEvent]) -> str:
    """Returns where two event sequences differ (ignoring times and latencies), or "" when they do not."""
    for left, right in zip(recorded, replayed, strict=False):
        a, b = _comparable(left), _comparable(right)
        if a != b:
            kinds = f"recorded {a.WhichOneof('event')}, replayed {b.WhichOneof('event')}"
            return f"event {left.sequence}: {kinds}: {b}"
    if len(recorded) != len(replayed):
        return f"the recorded run has {len(recorded)} events, the replay {len(replayed)}"
    return ""


@dataclass(frozen=True)
class Replay:
    """What a replay produced.

    Attributes:
        events: The replayed events, numbered from 1, ``run_finished`` last.
        difference: Where they differ from the recorded ones; "" when they do not.
    """

    events: list[res.RunEvent]
    difference: str


async def replay(
    run: RunRow,
    spec: AgentSpec,
    recorded: Sequence[res.RunEvent],
    finished: res.Run,
    timeout: float,
) -> Replay:
    """Replays an ended (or waiting) run from its recorded events.

    Args:
        run: The run as stored.
        spec: Its agent revision, with its real tools (they are replaced, never called).
        recorded: Its stored events, in order, ``run_finished`` included when it ended.
        finished: The run as its ``run_finished`` event shows it (or as it is now, when it waits).
        timeout: The deadline of each replayed stretch of work.

    Returns:
        The replayed events and how they differ from ``recorded``.
    """
    model = RecordedModel(recorded)
    spec = AgentSpec(**{**spec.__dict__, "tools": recorded_tools(spec.tools, recorded)})
    decisions = recorded_decisions(recorded)
    starts = [e.run_started for e in recorded if e.WhichOneof("event") == "run_started"]
    sink = LiveRun(dataclasses.replace(run, last_sequence=0), lambda: run.create_time)
    checkpoint = Checkpoint.start(run.input)
    outcome: Outcome | None = None
    state: RunState = RunState.SUCCEEDED
    error: ReplayDiverged | None = None
    for stretch, started in enumerate(starts):
        sink.append(run_started=started)
        try:
            outcome = await run_agent(
                cast(ModelRouter, model),  # the loop uses only open and endpoint_url
                spec,
                checkpoint,
                run.tools_enabled,
                timeout,
                sink,
                outcome,
                decisions if stretch else None,
            )
        except ReplayDiverged as diverged:
            state, error = RunState(run.state), diverged  # the recording stops here: the run ended so
            break
        except RunFailed as failure:
            outcome, state = failure.outcome, RunState.FAILED
            break
        if outcome.checkpoint is None:
            state = RunState.SUCCEEDED
            break
        pending = outcome.checkpoint.pending
        sink.append(
            requires_action=res.RequiresAction(
                tool_calls=[
                    res.ToolCall(id=c["id"], tool=c["tool"], arguments=c["arguments"]) for c in pending
                ]
            )
        )
        state = RunState.REQUIRES_ACTION
    events = list(sink.events)
    if state not in (RunState.RUNNING, RunState.REQUIRES_ACTION):
        replayed = res.Run()
        replayed.CopyFrom(finished)
        if outcome is not None and error is None:
            replayed.output = outcome.output
            del replayed.tool_calls[:]
            replayed.tool_calls.extend(res.ToolCall(**call) for call in outcome.tool_calls)
            del replayed.citations[:]
            replayed.citations.extend(res.Citation(**c) for c in knowledge_tool.citations(outcome.tool_calls))
            replayed.usage.CopyFrom(
                res.Usage(
                    input_tokens=outcome.input_tokens,
                    output_tokens=outcome.output_tokens,
                    model_calls=outcome.model_calls,
                )
            )
        events.append(res.RunEvent(sequence=len(events) + 1, run_finished=replayed))
    difference = compare(recorded, events)
    if not difference and model.unused():
        difference = f"the replay left {model.unused()} recorded model replies unused"
    return Replay(events, difference)
