"""MCP pieces without a server: sealed headers, function names, URL and header rules."""

from __future__ import annotations

import pytest

from services.agent.mcp import (
    FUNCTION_NAME,
    function_name_of,
    header_violations,
    open_headers,
    seal_headers,
    url_violations,
)
from services.agent.models import MessageRow, Role
from services.agent.threads import chat_messages
from services.kit.sealing import Sealer, SealError
from services.kit.timestamps import utcnow

NAME = "tenants/acme/mcpServers/fleet"


def test_sealed_headers_open_only_with_their_key_and_server() -> None:
    sealer = Sealer.from_hex("11" * 32)
    sealed = seal_headers(sealer, NAME, {"Authorization": "Bearer s3cr3t"})
    assert b"s3cr3t" not in sealed
    assert open_headers(sealer, NAME, sealed) == {"Authorization": "Bearer s3cr3t"}
    assert seal_headers(sealer, NAME, {"a": "b"}) != seal_headers(sealer, NAME, {"a": "b"})  # fresh nonces
    with pytest.raises(SealError):  # copied onto another tenant's row
        open_headers(sealer, "tenants/evil/mcpServers/fleet", sealed)
    with pytest.raises(SealError):
        open_headers(Sealer.from_hex("22" * 32), NAME, sealed)
    with pytest.raises(SealError):
        open_headers(sealer, NAME, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(ValueError):
        Sealer(b"short")


@pytest.mark.parametrize(
    ("server", "tool", "expected"),
    [
        ("fleet", "lookup_hub", "fleet__lookup_hub"),
        ("fleet", "hubs.lookup", "fleet__hubs_lookup"),
        ("a" * 63, "t" * 128, None),
    ],
)
def test_function_names_fit_openai(server: str, tool: str, expected: str | None) -> None:
    name = function_name_of(server, tool)
    assert FUNCTION_NAME.match(name)
    if expected is not None:
        assert name == expected
    else:
        assert len(name) == 64 and name != function_name_of(server, tool[:-1] + "u")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://mcp.example.com/mcp", True),
        ("http://127.0.0.1:8000/mcp", True),
        ("ftp://mcp.example.com/mcp", False),
        ("mcp.example.com/mcp", False),
        ("https://user:pw@mcp.example.com/mcp", False),
        ("https://mcp.example.com:99999/mcp", False),
        ("https://mcp.example.com/m cp", False),
    ],
)
def test_urls(url: str, ok: bool) -> None:
    assert (url_violations(url, "url") == []) is ok


def test_headers() -> None:
    assert header_violations({"Authorization": "Bearer x", "X-Api-Key": "k"}, "h") == []
    fields = [v.field for v in header_violations({"Host": "x", "a b": "y", "x-ok": "v\r\nInjected: 1"}, "h")]
    assert fields == ["h['Host']", "h['a b']", "h['x-ok']"]
    assert [v.field for v in header_violations({"X-Key": "a", "x-key": "b"}, "h")] == ["h"]


def test_a_thread_replays_an_mcp_call_by_its_function_name() -> None:
    call = {
        "id": "c1",
        "tool": f"{NAME}/tools/hubs.lookup",
        "arguments": "{}",
        "result": "{}",
        "failed": False,
    }
    message = MessageRow("acme", "t", "m", 0, Role.TOOL, "{}", call, "run", utcnow())
    assistant, _ = chat_messages([message])
    assert assistant["tool_calls"][0]["function"]["name"] == "fleet__hubs_lookup"
