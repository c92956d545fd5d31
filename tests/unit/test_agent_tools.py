"""Tool calls the model gets wrong, and tools that break, become tool errors for the model."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from services.agent.runner import _call_tool
from services.agent.tools import CATALOG, route_distance
from tests.service.helpers import extra_tool, hub_tool


def _explode(args: dict[str, Any]) -> Any:
    raise RuntimeError("the tool's own bug")


ROUTE = json.dumps({"origin": "Rotterdam", "destination": "Berlin"})


async def call(function: str, arguments: str) -> tuple[str, bool]:
    """Calls the built-in tool the model named ``function`` as a run does."""
    return await _call_tool(CATALOG.get(f"tools/{function}"), function, arguments)


@pytest.mark.parametrize(
    ("function", "arguments", "error"),
    [
        ("teleport", ROUTE, "no tool named 'teleport'"),
        ("route_distance", '{"origin": "Rotterdam",', "the arguments are not JSON"),
        ("route_distance", '["Rotterdam", "Berlin"]', "the arguments must be a JSON object"),
        (
            "route_distance",
            '{"origin": "Rotterdam"}',
            "JSON Schema at $: 'destination' is a required property",
        ),
        (
            "route_distance",
            '{"origin": "Atlantis", "destination": "Berlin"}',
            "JSON Schema at $.origin: 'Atlantis' is not one of",
        ),
        ("route_distance", '{"origin": "Berlin", "destination": "Berlin"}', "the same hub"),
    ],
)
async def test_bad_calls_are_tool_errors(function: str, arguments: str, error: str) -> None:
    result, failed = await call(function, arguments)
    assert failed
    assert error in json.loads(result)["error"]


@pytest.mark.parametrize(
    ("function", "error"),
    [
        (_explode, "the tool failed (RuntimeError)"),
        (lambda args: {"hubs": {"Rotterdam"}}, "the tool returned a result that is not JSON"),
        (lambda args: {"km": math.nan}, "the tool returned a result that is not JSON"),
    ],
    ids=["raises", "a set", "NaN"],
)
async def test_broken_tools_are_tool_errors(function: Any, error: str) -> None:
    with extra_tool(hub_tool("broken", function)):
        result, failed = await call("broken", '{"hub": "Rotterdam"}')
    assert failed
    assert json.loads(result)["error"].startswith(error)
    assert "own bug" not in result, "a tool's exception message is not the model's business"


async def test_a_good_call_returns_the_result() -> None:
    result, failed = await call("route_distance", ROUTE)
    assert not failed
    assert json.loads(result) == route_distance(json.loads(ROUTE))
