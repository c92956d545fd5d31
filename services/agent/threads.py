"""What a run on a thread sees of it, and what it appends to it.

A run on a thread gets the thread's history between the agent's instructions and
its input, bounded by a token budget. The history is cut in whole turns (a user
message and every message after it up to the next user message), dropping the
oldest turns first, so that the model never sees a reply without the question it
answers. Tokens are estimated, not counted with the model's tokenizer (which the
service does not have for an arbitrary OpenAI-compatible endpoint): a message costs
its characters divided by :data:`CHARS_PER_TOKEN`, rounded up, the heuristic
OpenAI gives for English text ("What are tokens and how to count them?").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from services.agent.mcp import function_name_of, is_mcp_tool
from services.agent.models import MessageRow, Role

CHARS_PER_TOKEN = 4
#: The most recent messages a run reads from its thread, before the token budget cuts them.
MAX_HISTORY_MESSAGES = 500


def estimate_tokens(message: MessageRow) -> int:
    """Returns the estimated tokens of a message: its characters / 4, rounded up.

    A tool message counts its result (its ``content``) and the call's arguments.
    """
    chars = len(message.content)
    if message.tool_call is not None:
        chars += len(str(message.tool_call.get("arguments", "")))
    return math.ceil(chars / CHARS_PER_TOKEN)


def window(messages: Sequence[MessageRow], budget: int) -> list[MessageRow]:
    """Returns the newest whole turns of ``messages`` whose estimated tokens fit in ``budget``.

    Args:
        messages: A thread's messages (or its newest ones), oldest first. Messages before
            the first user message (the end of a turn cut off by the read) are dropped.
        budget: The most estimated tokens the kept messages may take together.

    Returns:
        The kept messages, oldest first: whole turns, the oldest dropped first; empty when
        even the newest turn does not fit.
    """
    turns: list[list[MessageRow]] = []
    for message in messages:
        if message.role == Role.USER:
            turns.append([message])
        elif turns:
            turns[-1].append(message)
    kept: list[list[MessageRow]] = []
    used = 0
    for turn in reversed(turns):
        cost = sum(estimate_tokens(m) for m in turn)
        if used + cost > budget:
            break
        kept.append(turn)
        used += cost
    return [message for turn in reversed(kept) for message in turn]


def chat_messages(messages: Sequence[MessageRow]) -> list[dict[str, Any]]:
    """Returns a thread's messages as Chat Completions messages, in order.

    A tool message becomes the assistant's call (``tool_calls``) and the tool's result
    (role ``tool``), as the run exchanged them with the model.
    """
    chat: list[dict[str, Any]] = []
    for message in messages:
        if message.role == Role.USER:
            chat.append({"role": "user", "content": message.content})
        elif message.role == Role.ASSISTANT:
            chat.append({"role": "assistant", "content": message.content})
        elif message.tool_call is not None:
            call = message.tool_call
            function = {"name": _function_name(str(call["tool"])), "arguments": call["arguments"]}
            chat.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": call["id"], "type": "function", "function": function}],
                }
            )
            chat.append({"role": "tool", "tool_call_id": call["id"], "content": message.content})
    return chat


def _function_name(tool: str) -> str:
    """The function name the model called a tool by: a built-in's ID, ``{server}__{tool}`` for an MCP tool."""
    if is_mcp_tool(tool):
        _, _, _, server_id, _, tool_id = tool.split("/")
        return function_name_of(server_id, tool_id)
    return tool.removeprefix("tools/")


def tool_call_of(message: MessageRow) -> dict[str, Any]:
    """Returns the ``ToolCall`` fields of a tool message (``failed`` as a bool)."""
    call = dict(message.tool_call or {})
    call["failed"] = bool(call.get("failed", False))
    return call


def exchanged(
    user_input: str, tool_calls: Sequence[dict[str, Any]], output: str
) -> list[tuple[Role, str, dict[str, Any] | None]]:
    """Returns what a finished run appends to its thread, ``(role, content, tool call)`` in order.

    Its input, each tool call with its result, then its reply.
    """
    appended: list[tuple[Role, str, dict[str, Any] | None]] = [(Role.USER, user_input, None)]
    for call in tool_calls:
        appended.append((Role.TOOL, str(call["result"]), dict(call)))
    appended.append((Role.ASSISTANT, output, None))
    return appended
