"""The agent loop: model turns and tool calls until the model answers.

Every model call goes through the ``openai`` SDK's Chat Completions API, so
any OpenAI-compatible endpoint works (llama.cpp's server, vLLM, hosted APIs).

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
* built-in tools run in a worker thread, so a slow one holds up its own run only; MCP
  tools (:mod:`services.agent.mcp`) are awaited, each call within its own deadline, and a
  slow or broken MCP server fails that call only;
* the whole loop has a deadline (:class:`RunFailed` ``RUN_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import openai
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from services.agent import tools as catalog

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 4


class OfferedTool(Protocol):
    """A tool a run offers the model: a built-in :class:`~services.agent.tools.Tool` or an MCP tool."""

    @property
    def name(self) -> str:
        """Resource name, recorded on the run's tool calls."""

    @property
    def function_name(self) -> str:
        """What the model calls it by (``^[a-zA-Z0-9_-]{1,64}$``)."""

    @property
    def description(self) -> str:
        """What it does, for the model."""

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON Schema of its arguments object."""

    @property
    def validator(self) -> Draft202012Validator:
        """Checks arguments against ``parameters``."""

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Returns the tool's result for validated ``arguments``; raises ToolError for a bad call."""


@dataclass(frozen=True)
class AgentSpec:
    """What a run needs to know of its agent.

    Attributes:
        mcp_tools: The agent's MCP tools, resolved (:func:`services.agent.mcp.resolve_tools`);
            offered after its built-in tools.
    """

    model: str
    instructions: str
    tools: list[str]
    temperature: float | None
    max_output_tokens: int
    tool_choice_required: bool
    mcp_tools: Sequence[OfferedTool] = ()


@dataclass
class Outcome:
    """What a run produced."""

    output: str = ""
    model: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0


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


def _tool_param(tool: OfferedTool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.function_name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def _first_choice(spec: AgentSpec, offered: Sequence[OfferedTool]) -> Any:
    if not spec.tool_choice_required:
        return "auto"
    if len(offered) == 1:
        return {"type": "function", "function": {"name": offered[0].function_name}}
    return "required"


def _call_key(function_name: str, arguments: str) -> tuple[str, str]:
    """Identity of a call: the function and its arguments as canonical JSON."""
    try:
        canonical = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments
    return function_name, canonical


def _tool_error(message: str) -> tuple[str, bool]:
    return json.dumps({"error": message}), True


async def _call_tool(tool: OfferedTool | None, function_name: str, arguments: str) -> tuple[str, bool]:
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
    client: openai.AsyncOpenAI,
    spec: AgentSpec,
    user_input: str,
    tools_enabled: bool,
    timeout: float,
    history: Sequence[dict[str, Any]] = (),
) -> Outcome:
    """Runs the loop for one input message.

    Args:
        client: OpenAI-compatible client (its own timeout applies per call).
        spec: The agent.
        user_input: The user's message.
        tools_enabled: Whether tools are offered at all (the ``agent-tools`` flag).
        timeout: Seconds the whole run may take, model calls and tools included.
        history: Earlier messages of the conversation (Chat Completions messages), sent
            between the instructions and ``user_input``.

    Returns:
        The final reply, the tool calls made, and summed token usage.

    Raises:
        ModelError: The endpoint failed, or returned no choice.
        RunFailed: ``RUN_TIMEOUT`` (DEADLINE_EXCEEDED), the run took longer than ``timeout``.
    """
    outcome = Outcome(model=spec.model)
    try:
        async with asyncio.timeout(timeout):
            return await _loop(client, spec, user_input, tools_enabled, outcome, history)
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


async def _loop(
    client: openai.AsyncOpenAI,
    spec: AgentSpec,
    user_input: str,
    tools_enabled: bool,
    outcome: Outcome,
    history: Sequence[dict[str, Any]],
) -> Outcome:
    offered: list[OfferedTool] = (
        [catalog.CATALOG[name] for name in spec.tools if name in catalog.CATALOG] + list(spec.mcp_tools)
        if tools_enabled
        else []
    )
    by_function = {tool.function_name: tool for tool in offered}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": spec.instructions},
        *history,
        {"role": "user", "content": user_input},
    ]
    seen: set[tuple[str, str]] = set()
    tool_choice: Any = _first_choice(spec, offered) if offered else None
    for _round in range(MAX_TOOL_ROUNDS + 1):
        if _round == MAX_TOOL_ROUNDS and offered:
            tool_choice = "none"
        kwargs: dict[str, Any] = {
            "model": spec.model,
            "messages": messages,
            "max_tokens": spec.max_output_tokens,
        }
        if spec.temperature is not None:
            kwargs["temperature"] = spec.temperature
        if offered:
            kwargs["tools"] = [_tool_param(t) for t in offered]
            kwargs["tool_choice"] = tool_choice
        try:
            response = await client.chat.completions.create(**kwargs)
        except openai.APIError as error:
            raise ModelError("MODEL_UNAVAILABLE", f"the model endpoint failed: {error}") from None
        outcome.model_calls += 1
        outcome.model = response.model or spec.model
        if response.usage:
            outcome.input_tokens += response.usage.prompt_tokens
            outcome.output_tokens += response.usage.completion_tokens
        if not response.choices:
            raise ModelError("MODEL_EMPTY_RESPONSE", "the model returned no choice")
        message = response.choices[0].message
        calls = [c for c in (message.tool_calls or []) if c.type == "function"]
        if not calls or tool_choice == "none":
            outcome.output = (message.content or "").strip()
            return outcome
        fresh = [c for c in calls if _call_key(c.function.name, c.function.arguments) not in seen]
        if not fresh:
            tool_choice = "none"
            continue
        messages.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in fresh
                ],
            }
        )
        for call in fresh:
            seen.add(_call_key(call.function.name, call.function.arguments))
            tool = by_function.get(call.function.name)
            result, failed = await _call_tool(tool, call.function.name, call.function.arguments)
            outcome.tool_calls.append(
                {
                    "id": call.id,
                    "tool": tool.name if tool is not None else f"tools/{call.function.name}",
                    "arguments": call.function.arguments,
                    "result": result,
                    "failed": failed,
                }
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        tool_choice = "auto"
    return outcome
