"""The agent loop: model turns and tool calls until the model answers, or a person must decide.

Every model call goes through the ``openai`` SDK's Chat Completions API, streamed, so
any OpenAI-compatible endpoint works (llama.cpp's server, vLLM, hosted APIs) and the
reply reaches :class:`EventSink` token by token; :class:`~services.agent.routing.ModelRouter`
picks the endpoint (retries and fallback of a route).

Loop rules:
* the first turn uses the agent's tool choice (``required`` names the tool
  when there is only one, which grammar-constrained local servers need);
* later turns use ``auto``;
* a call identical to one already made (same function, same arguments as JSON) is not
  executed again: the model is asked for its final answer with
  ``tool_choice="none"``; so is a model that exceeds ``MAX_TOOL_ROUNDS``;
* a tool call that cannot be answered (unknown tool, arguments that are not a JSON object
  or fail the tool's JSON Schema, a tool that raises or returns something that is not
  JSON) goes back to the model as a tool message ``{"error": "..."}`` and is recorded as
  failed; the run goes on;
* a call of a tool that needs approval is not made: the loop returns with the call
  pending and its :class:`Checkpoint`; :func:`run_agent` given the checkpoint and the
  decisions makes the approved calls (with edited arguments, if any), tells the model
  of the rejected ones, and goes on. Calls of the same turn that need no approval are
  made before the loop stops;
* the loop has a deadline per stretch of work (:class:`RunFailed` ``RUN_TIMEOUT``);
  time spent waiting for a person does not count.

Usage: when the endpoint reports none in a stream (llama-cpp-python's server ignores
``stream_options``), output tokens are the streamed chunks that carried text or call
arguments (that server streams one token per chunk), and input tokens are estimated as
the prompt's characters / 4, rounded up (:mod:`services.agent.threads`'s heuristic).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import openai
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from services.agent import tools as catalog
from services.agent.model_tracing import chat_span, record_reply
from services.agent.routing import ModelRouter, RouteUnavailable
from services.agent.threads import CHARS_PER_TOKEN

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 4
#: What the model is told, before the person's reason, of a call that was rejected.
REJECTION = "a person rejected this call: "


class RunTool(Protocol):
    """A tool a run may call: built in (:class:`services.agent.tools.Tool`) or from an MCP server."""

    @property
    def name(self) -> str:
        """Resource name, e.g. ``tools/route_distance``."""
        ...

    @property
    def function_name(self) -> str:
        """The function name the model calls it by, ``^[a-zA-Z0-9_-]{1,64}$``."""
        ...

    @property
    def description(self) -> str:
        """What it does, for the model."""
        ...

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON Schema of its arguments object."""
        ...

    @property
    def validator(self) -> Draft202012Validator:
        """Checks arguments against ``parameters``."""
        ...

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Returns a JSON-able result; raises :class:`~services.agent.tools.ToolError` for the model."""
        ...


@dataclass(frozen=True)
class AgentSpec:
    """What a run needs to know of its agent.

    Attributes:
        model: The model asked: a model ID, or ``routes/{route}`` (:mod:`services.agent.routing`).
        instructions: The system message.
        tools: The tools offered (when the run has tools enabled).
        temperature: Sampling temperature; None leaves it to the endpoint.
        max_output_tokens: The most tokens per model call.
        tool_choice_required: Whether the first turn must call a tool.
        approval_required: Resource names of the tools whose calls wait for a person.
    """

    model: str
    instructions: str
    tools: Sequence[RunTool]
    temperature: float | None
    max_output_tokens: int
    tool_choice_required: bool
    approval_required: frozenset[str] = frozenset()


@dataclass
class Checkpoint:
    """Where a run stands between model turns; stored while the run waits for approvals.

    Attributes:
        messages: The conversation after the system message: history, the user's input,
            the model's replies and the tool results so far (Chat Completions messages).
        seen: The calls made, as (function, canonical JSON arguments), never made twice.
        rounds: Model calls made.
        tool_choice: The next turn's ``tool_choice``; None for the agent's first-turn choice.
        pending: The calls awaiting a decision: ``id``, ``tool`` (resource name),
            ``function`` and ``arguments``.
        model: The model or route the run asks (``AgentSpec.model``), kept for its
            resumption; empty for a checkpoint stored before routes.
    """

    messages: list[dict[str, Any]]
    seen: list[list[str]] = field(default_factory=list)
    rounds: int = 0
    tool_choice: Any = None
    pending: list[dict[str, str]] = field(default_factory=list)
    model: str = ""

    @classmethod
    def start(cls, user_input: str, history: Sequence[dict[str, Any]] = ()) -> Checkpoint:
        """Returns the checkpoint of a new run: the history, then the user's input."""
        return cls(messages=[*history, {"role": "user", "content": user_input}])

    def to_json(self) -> dict[str, Any]:
        """Returns the checkpoint as a JSON object (the run row's ``checkpoint``)."""
        return {
            "messages": self.messages,
            "seen": self.seen,
            "rounds": self.rounds,
            "tool_choice": self.tool_choice,
            "pending": self.pending,
            "model": self.model,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Checkpoint:
        """Returns the checkpoint :meth:`to_json` made."""
        return cls(
            messages=list(value["messages"]),
            seen=[list(key) for key in value["seen"]],
            rounds=int(value["rounds"]),
            tool_choice=value["tool_choice"],
            pending=list(value["pending"]),
            model=str(value.get("model", "")),
        )


@dataclass(frozen=True)
class Decision:
    """A person's decision on a pending call.

    Attributes:
        approve: Whether to make the call.
        reason: Why it was rejected, for the model.
        arguments: JSON arguments to make the call with instead of the model's; empty keeps them.
    """

    approve: bool
    reason: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ModelReply:
    """One finished model call.

    Attributes:
        model: The model that answered.
        latency: Seconds from the request to the last chunk, failed attempts and backoffs included.
        input_tokens: Prompt tokens (reported, or estimated: see the module's docstring).
        output_tokens: Completion tokens (likewise).
        content: The reply's text.
        tool_calls: The calls asked for: ``id``, ``function``, ``arguments``.
        finish_reason: Why the model stopped, as the endpoint said.
        route: The route that served the call; empty for a model asked by ID.
        endpoint: The name of the route's endpoint that answered.
        attempts: Attempts the call took over the route's endpoints, failed ones included.
    """

    model: str
    latency: float
    input_tokens: int
    output_tokens: int
    content: str
    tool_calls: list[dict[str, str]]
    finish_reason: str
    route: str = ""
    endpoint: str = ""
    attempts: int = 1


class EventSink(Protocol):
    """Receives what a run does as it happens (the service turns it into ``RunEvent``s)."""

    def text_delta(self, text: str) -> None:
        """The model added ``text`` to its reply."""

    def model_call(self, reply: ModelReply) -> None:
        """A model call finished."""

    def tool_call_started(self, call: Mapping[str, Any]) -> None:
        """A tool call began: ``id``, ``tool``, ``arguments``."""

    def tool_call_finished(self, call: Mapping[str, Any]) -> None:
        """A tool call ended: ``id``, ``tool``, ``arguments``, ``result``, ``failed``."""


@dataclass
class Outcome:
    """What a run produced, over every stretch of its work.

    Attributes:
        output: The final reply.
        model: The model that answered last.
        tool_calls: Every call made, in order: ``id``, ``tool``, ``arguments``, ``result``, ``failed``.
        input_tokens: Prompt tokens, summed.
        output_tokens: Completion tokens, summed.
        model_calls: Model calls made.
        checkpoint: Set when the run stopped for approvals (its ``pending`` calls), else None.
    """

    output: str = ""
    model: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    checkpoint: Checkpoint | None = None


class RunFailed(Exception):
    """The run cannot finish; ``outcome`` holds what it did until then (its usage is metered).

    Attributes:
        reason: The ``ErrorInfo`` reason stored on the run.
        code: The status code of the run's ``error``.
        outcome: The tool calls made and tokens used before the failure.
    """

    def __init__(self, reason: str, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.outcome = Outcome()


class ModelError(RunFailed):
    """The model endpoint failed or answered something unusable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message, grpc.StatusCode.UNAVAILABLE)


def _tool_param(tool: RunTool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.function_name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def _first_choice(spec: AgentSpec, offered: Sequence[RunTool]) -> Any:
    if not spec.tool_choice_required:
        return "auto"
    if len(offered) == 1:
        return {"type": "function", "function": {"name": offered[0].function_name}}
    return "required"


def _call_key(function_name: str, arguments: str) -> list[str]:
    """Identity of a call: the function and its arguments as canonical JSON."""
    try:
        canonical = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments
    return [function_name, canonical]


def _tool_error(message: str) -> tuple[str, bool]:
    return json.dumps({"error": message}), True


async def _call_tool(tool: RunTool | None, function_name: str, arguments: str) -> tuple[str, bool]:
    """Calls a tool; returns its result as JSON text and whether the call failed.

    Never raises for a bad call or a broken tool: the error is the result, for the model.
    """
    if tool is None:
        return _tool_error(f"no tool named {function_name!r}")
    try:
        args = json.loads(arguments or "{}")
    except ValueError as error:
        return _tool_error(f"the arguments are not JSON: {error}")
    if not isinstance(args, dict):
        return _tool_error("the arguments must be a JSON object")
    violation = best_match(tool.validator.iter_errors(args))
    if violation is not None:
        where = violation.json_path
        return _tool_error(
            f"the arguments do not match the tool's JSON Schema at {where}: {violation.message}"
        )
    try:
        result = await tool.call(args)
    except catalog.ToolError as error:
        return _tool_error(str(error))
    except Exception as error:  # a broken tool fails its call, never the run
        log.warning("tool %s raised", tool.name, exc_info=True)
        return _tool_error(f"the tool failed ({type(error).__name__})")
    try:
        return json.dumps(result, allow_nan=False), False
    except (TypeError, ValueError) as error:
        return _tool_error(f"the tool returned a result that is not JSON ({error})")


async def run_agent(
    router: ModelRouter,
    spec: AgentSpec,
    checkpoint: Checkpoint,
    tools_enabled: bool,
    timeout: float,
    sink: EventSink,
    outcome: Outcome | None = None,
    decisions: Mapping[str, Decision] | None = None,
) -> Outcome:
    """Runs the loop from ``checkpoint`` until the model answers or a call needs approval.

    Args:
        router: Opens each model call on the endpoint that answers it.
        spec: The agent.
        checkpoint: Where the run stands (:meth:`Checkpoint.start` for a new run); updated
            in place.
        tools_enabled: Whether tools are offered at all (the ``agent-tools`` flag).
        timeout: Seconds this stretch of work may take, model calls and tools included.
        sink: Receives the run's events.
        outcome: What earlier stretches of the run produced, added to; None for a new run.
        decisions: For a checkpoint with pending calls, the decision on each, by call ID.

    Returns:
        The final reply, every tool call made, and summed token usage; with ``checkpoint``
        set when the run stopped for approvals.

    Raises:
        ModelError: The endpoint failed, or returned no choice.
        RunFailed: ``RUN_TIMEOUT`` (DEADLINE_EXCEEDED), the work took longer than ``timeout``.
    """
    outcome = outcome if outcome is not None else Outcome(model=spec.model)
    outcome.checkpoint = None
    try:
        async with asyncio.timeout(timeout):
            return await _loop(router, spec, checkpoint, tools_enabled, outcome, sink, decisions or {})
    except TimeoutError:
        failure = RunFailed(
            "RUN_TIMEOUT",
            f"the run took longer than {timeout:g} s, the most a run may take",
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
    except RunFailed as error:
        failure = error
    failure.outcome = outcome
    raise failure


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Returns the estimated prompt tokens of chat messages: their JSON's characters / 4, rounded up.

    Used when an endpoint reports no usage in a stream (see the module's docstring).
    """
    return math.ceil(sum(len(json.dumps(m)) for m in messages) / CHARS_PER_TOKEN)


async def _complete(
    router: ModelRouter, request: dict[str, Any], sink: EventSink, outcome: Outcome
) -> ModelReply:
    """Makes one streamed model call, passing text deltas to ``sink`` as they arrive.

    ``router`` retries and falls over until an endpoint sends a first chunk; a stream that
    fails after that is not retried (its text went to ``sink`` already): the call fails
    with ``MODEL_UNAVAILABLE``.

    A call cancelled midway (``CancelRun``) still adds what it used to ``outcome``,
    estimated: the chunks streamed so far and the prompt's estimate. The call is one
    ``chat <model>`` span (:mod:`services.agent.model_tracing`); its server is the first
    endpoint the call goes to.
    """
    url = router.endpoint_url(request["model"])
    began = time.monotonic()
    try:
        with chat_span(request["model"], url) as span:
            reply = await _stream(router, request, sink, outcome)
            record_reply(span, reply.model, reply.input_tokens, reply.output_tokens, reply.finish_reason)
    except ModelError as error:
        if router.metrics is not None:
            router.metrics.failed(
                request_model=request["model"],
                server_address=url.host,
                seconds=time.monotonic() - began,
                error_type=error.reason,
            )
        raise
    if router.metrics is not None:
        router.metrics.answered(
            request_model=request["model"],
            response_model=reply.model,
            server_address=url.host,
            seconds=reply.latency,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
        )
    return reply


async def _stream(
    router: ModelRouter, request: dict[str, Any], sink: EventSink, outcome: Outcome
) -> ModelReply:
    started = time.monotonic()
    model, finish_reason, usage = request["model"], "", None
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    chunks, answered = 0, False
    try:
        stream = await router.open(request)
        model = stream.model
        async for chunk in stream.chunks():
            model = chunk.model or model
            answered = answered or bool(chunk.choices)
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                delta = choice.delta
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
                if delta is None:
                    continue
                if delta.content:
                    chunks += 1
                    text.append(delta.content)
                    sink.text_delta(delta.content)
                for part in delta.tool_calls or []:
                    call = calls.setdefault(part.index, {"id": "", "function": "", "arguments": []})
                    if part.id:
                        call["id"] = part.id
                    if part.function is not None:
                        if part.function.name:
                            call["function"] = part.function.name
                        if part.function.arguments:
                            chunks += 1
                            call["arguments"].append(part.function.arguments)
    except RouteUnavailable as error:
        raise ModelError("MODEL_UNAVAILABLE", str(error)) from None
    except openai.APIError as error:
        raise ModelError("MODEL_UNAVAILABLE", f"the model endpoint failed: {error}") from None
    except asyncio.CancelledError:
        outcome.model_calls += 1
        outcome.input_tokens += estimate_prompt_tokens(request["messages"])
        outcome.output_tokens += chunks
        raise
    if not answered:
        raise ModelError("MODEL_EMPTY_RESPONSE", "the model returned no choice")
    if usage is not None:
        input_tokens, output_tokens = usage.prompt_tokens, usage.completion_tokens
    else:
        input_tokens, output_tokens = estimate_prompt_tokens(request["messages"]), chunks
    return ModelReply(
        model=model,
        latency=time.monotonic() - started,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        content="".join(text),
        tool_calls=[
            {"id": c["id"] or f"call_{i}", "function": c["function"], "arguments": "".join(c["arguments"])}
            for i, c in sorted(calls.items())
        ],
        finish_reason=finish_reason,
        route=stream.route,
        endpoint=stream.endpoint,
        attempts=stream.attempts,
    )


async def _make_call(
    by_function: Mapping[str, RunTool],
    call: Mapping[str, str],
    arguments: str,
    checkpoint: Checkpoint,
    outcome: Outcome,
    sink: EventSink,
    rejection: str | None = None,
) -> None:
    """Makes one call (or tells the model it was rejected) and records it everywhere."""
    record: dict[str, Any] = {"id": call["id"], "tool": call["tool"], "arguments": arguments}
    sink.tool_call_started(record)
    if rejection is not None:
        result, failed = _tool_error(rejection)
    else:
        result, failed = await _call_tool(by_function.get(call["function"]), call["function"], arguments)
    record.update(result=result, failed=failed)
    sink.tool_call_finished(record)
    outcome.tool_calls.append(record)
    checkpoint.messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})


async def _decide_pending(
    by_function: Mapping[str, RunTool],
    checkpoint: Checkpoint,
    outcome: Outcome,
    sink: EventSink,
    decisions: Mapping[str, Decision],
) -> None:
    """Makes the approved pending calls and reports the rejected ones to the model."""
    for call in checkpoint.pending:
        decision = decisions[call["id"]]
        if decision.approve:
            await _make_call(
                by_function, call, decision.arguments or call["arguments"], checkpoint, outcome, sink
            )
        else:
            reason = decision.reason or "no reason given"
            rejection = f"{REJECTION}{reason}"
            await _make_call(by_function, call, call["arguments"], checkpoint, outcome, sink, rejection)
    checkpoint.pending = []


async def _loop(
    router: ModelRouter,
    spec: AgentSpec,
    checkpoint: Checkpoint,
    tools_enabled: bool,
    outcome: Outcome,
    sink: EventSink,
    decisions: Mapping[str, Decision],
) -> Outcome:
    offered = list(spec.tools) if tools_enabled else []
    by_function = {tool.function_name: tool for tool in offered}
    if checkpoint.pending:
        await _decide_pending(by_function, checkpoint, outcome, sink, decisions)
    if checkpoint.tool_choice is None:
        checkpoint.tool_choice = _first_choice(spec, offered) if offered else "auto"
    while True:
        if checkpoint.rounds >= MAX_TOOL_ROUNDS and offered:
            checkpoint.tool_choice = "none"
        request: dict[str, Any] = {
            "model": spec.model,
            "messages": [{"role": "system", "content": spec.instructions}, *checkpoint.messages],
            "max_tokens": spec.max_output_tokens,
        }
        if spec.temperature is not None:
            request["temperature"] = spec.temperature
        if offered:
            request["tools"] = [_tool_param(t) for t in offered]
            request["tool_choice"] = checkpoint.tool_choice
        reply = await _complete(router, request, sink, outcome)
        checkpoint.rounds += 1
        outcome.model_calls += 1
        outcome.model = reply.model
        outcome.input_tokens += reply.input_tokens
        outcome.output_tokens += reply.output_tokens
        sink.model_call(reply)
        calls = [c for c in reply.tool_calls if c["function"]]
        if not calls or checkpoint.tool_choice == "none" or not offered:
            outcome.output = reply.content.strip()
            return outcome
        fresh = [c for c in calls if _call_key(c["function"], c["arguments"]) not in checkpoint.seen]
        if not fresh:
            checkpoint.tool_choice = "none"
            continue
        checkpoint.messages.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["function"], "arguments": c["arguments"]},
                    }
                    for c in fresh
                ],
            }
        )
        held: list[dict[str, str]] = []
        for call in fresh:
            checkpoint.seen.append(_call_key(call["function"], call["arguments"]))
            tool = by_function.get(call["function"])
            named = {**call, "tool": tool.name if tool is not None else f"tools/{call['function']}"}
            if tool is not None and tool.name in spec.approval_required:
                held.append(named)
                continue
            await _make_call(by_function, named, call["arguments"], checkpoint, outcome, sink)
        checkpoint.tool_choice = "auto"
        if held:
            checkpoint.pending = held
            outcome.checkpoint = checkpoint
            return outcome
