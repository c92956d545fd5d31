"""The embedded model server, as ``orchestrall up`` starts it: what the model sees of a chat."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

# A tool result and a user message with every character HTML escaping would rewrite.
QUOTED_RESULT = json.dumps(
    {"origin": "Rotterdam", "destination": "Berlin", "road_km": 686.4, "note": "A & B <ok> 'x'"}
)
QUOTED_QUESTION = 'Is "Rotterdam" -> "Berlin" < 700 km & under 10 h?'
TOOL = {
    "type": "function",
    "function": {
        "name": "route_distance",
        "description": "Road distance between two hubs.",
        "parameters": {
            "type": "object",
            "properties": {"origin": {"type": "string"}, "destination": {"type": "string"}},
            "required": ["origin", "destination"],
        },
    },
}


def _history(question: str, result: str) -> list[dict[str, Any]]:
    arguments = json.dumps({"origin": "Rotterdam", "destination": "Berlin"})
    function = {"name": "route_distance", "arguments": arguments}
    call = {"id": "call-1", "type": "function", "function": function}
    return [
        {"role": "system", "content": "You plan truck routes."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call-1", "content": result},
    ]


async def _prompt_tokens(client: httpx.AsyncClient, messages: list[dict[str, Any]]) -> int:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "smollm2", "messages": messages, "tools": [TOOL], "max_tokens": 1, "temperature": 0},
    )
    response.raise_for_status()
    return int(response.json()["usage"]["prompt_tokens"])


async def _tokens(client: httpx.AsyncClient, text: str) -> int:
    response = await client.post("/extras/tokenize", json={"input": text})
    response.raise_for_status()
    return len(response.json()["tokens"])


# (question, tool result) of a chat, and the one text in it swapped for a short one.
CASES = {
    "tool-result": (("Distance?", QUOTED_RESULT), ("Distance?", "{}"), QUOTED_RESULT, "{}"),
    "user-message": ((QUOTED_QUESTION, "{}"), ("Distance?", "{}"), QUOTED_QUESTION, "Distance?"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_the_model_sees_messages_and_tool_results_unescaped(
    model_url: str, case: tuple[tuple[str, str], tuple[str, str], str, str]
) -> None:
    """A message swapped for a short one: the prompt shrinks by exactly the difference of their tokens.

    A template that HTML-escapes makes each quote, ``&``, ``<`` and ``>`` several tokens
    (``&#34;``), and one that drops tool messages changes nothing at all; both fail here.
    """
    full, short, text, short_text = case
    async with httpx.AsyncClient(base_url=model_url.removesuffix("/v1"), timeout=60) as client:
        grown = await _prompt_tokens(client, _history(*full)) - await _prompt_tokens(client, _history(*short))
        expected = await _tokens(client, text) - await _tokens(client, short_text)
    assert expected > 0
    assert grown == expected
