"""The history a run on a thread sees: whole turns, newest first, within an estimated token budget."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.agent.models import MessageRow, Role
from services.agent.threads import chat_messages, estimate_tokens, exchanged, window

NOW = dt.datetime(2026, 12, 8, tzinfo=dt.UTC)


def _message(position: int, role: Role, content: str, tool_call: dict[str, Any] | None = None) -> MessageRow:
    return MessageRow("t", "th", f"m{position}", position, role, content, tool_call, "run", NOW)


CALL = {
    "id": "c1",
    "tool": "tools/route_distance",
    "arguments": '{"a":1}',
    "result": '{"km":1}',
    "failed": False,
}


def _thread() -> list[MessageRow]:
    rows: list[MessageRow] = []
    for role, content, call in [
        *exchanged("a" * 40, [], "b" * 40),  # 10 + 10 tokens
        *exchanged("c" * 40, [CALL], "d" * 4),  # 10 + 4 (result 8 + arguments 7 characters) + 1
        *exchanged("e" * 8, [], "f" * 8),  # 2 + 2
    ]:
        rows.append(_message(len(rows), role, content, call))
    return rows


def test_tokens_are_characters_over_four_rounded_up() -> None:
    assert estimate_tokens(_message(0, Role.USER, "")) == 0
    assert estimate_tokens(_message(0, Role.USER, "abcde")) == 2
    assert estimate_tokens(_message(0, Role.TOOL, '{"km":1}', CALL)) == 4


def test_the_oldest_whole_turns_are_dropped_first() -> None:
    thread = _thread()
    assert [m.content for m in window(thread, 39)] == [m.content for m in thread]
    assert [m.position for m in window(thread, 38)] == [2, 3, 4, 5, 6]
    assert [m.position for m in window(thread, 19)] == [2, 3, 4, 5, 6]
    assert [m.position for m in window(thread, 18)] == [5, 6]
    assert window(thread, 3) == []
    # A read that starts in the middle of a turn drops what precedes its first user message.
    assert [m.position for m in window(thread[3:], 100)] == [5, 6]


def test_tool_messages_go_back_to_the_model_as_the_call_and_its_result() -> None:
    thread = _thread()[2:5]
    assert chat_messages(thread) == [
        {"role": "user", "content": "c" * 40},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "route_distance", "arguments": '{"a":1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"km":1}'},
        {"role": "assistant", "content": "d" * 4},
    ]
