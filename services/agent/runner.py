"""The agent loop: model turns and tool calls until the model answers.

Every model call goes through the ``openai`` SDK's Chat Completions API, so
any OpenAI-compatible endpoint works (llama.cpp's server, vLLM, hosted APIs).

Loop rules:
* the first turn uses the agent's tool choice (``required`` names the tool
  when there is only one, which grammar-constrained local servers need);
* later turns use ``auto``;
* a call identical to one already made (same function, same arguments as JSON) is not
  executed again: the model is asked for its final answer with
  ``tool_choice="none"``; so is a model that exceeds ``MAX_TOOL_ROUNDS``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import openai

from services.agent import tools as catalog

MAX_TOOL_ROUNDS = 4


@dataclass(frozen=True)
class AgentSpec:
    """What a run needs to know of its agent."""

    model: str
    instructions: str
    tools: list[str]
    temperature: float | None
    max_output_tokens: int
    tool_choice_required: bool


@dataclass
class Outcome:
    """What a run produced."""

    output: str = ""
    model: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0


class ModelError(Exception):
    """The model endpoint failed or answered something unusable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _tool_param(tool: catalog.Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.id, "description": tool.description, "parameters": tool.parameters},
    }


def _first_choice(spec: AgentSpec, offered: list[catalog.Tool]) -> Any:
    if not spec.tool_choice_required:
        return "auto"
    if len(offered) == 1:
        return {"type": "function", "function": {"name": offered[0].id}}
    return "required"


def _call_key(function_name: str, arguments: str) -> tuple[str, str]:
    """Identity of a call: the function and its arguments as canonical JSON."""
    try:
        canonical = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments
    return function_name, canonical


def _call_tool(function_name: str, arguments: str) -> tuple[str, bool]:
    tool = catalog.by_function_name(function_name)
    if tool is None:
        return json.dumps({"error": f"no tool named {function_name!r}"}), True
    try:
        args = json.loads(arguments or "{}")
        if not isinstance(args, dict):
            raise catalog.ToolError("arguments must be a JSON object")
        return json.dumps(tool.function(args)), False
    except (ValueError, catalog.ToolError) as error:
        return json.dumps({"error": str(error)}), True


async def run_agent(
    client: openai.AsyncOpenAI, spec: AgentSpec, user_input: str, tools_enabled: bool
) -> Outcome:
    """Runs the loop for one input message.

    Args:
        client: OpenAI-compatible client (its own timeout applies per call).
        spec: The agent.
        user_input: The user's message.
        tools_enabled: Whether tools are offered at all (the ``agent-tools`` flag).

    Returns:
        The final reply, the tool calls made, and summed token usage.

    Raises:
        ModelError: The endpoint failed, or returned no choice.
    """
    offered = (
        [catalog.CATALOG[name] for name in spec.tools if name in catalog.CATALOG] if tools_enabled else []
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": spec.instructions},
        {"role": "user", "content": user_input},
    ]
    outcome = Outcome(model=spec.model)
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
            result, failed = _call_tool(call.function.name, call.function.arguments)
            outcome.tool_calls.append(
                {
                    "id": call.id,
                    "tool": f"tools/{call.function.name}",
                    "arguments": call.function.arguments,
                    "result": result,
                    "failed": failed,
                }
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        tool_choice = "auto"
    return outcome
