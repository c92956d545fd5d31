"""MCP through Envoy: the built-in tool catalog as an MCP server at /mcp, and MCP servers over REST."""

from __future__ import annotations

import asyncio

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from services.agent.notifications.handlers import SEND_NOTIFICATION
from services.agent.tools import CATALOG, route_distance
from services.cli.stack import Stack
from tests.mesh.conftest import auth, stored_rows
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh


async def _catalog(url: str, token: str) -> tuple[list[str], object]:
    async with httpx2.AsyncClient(headers=auth(token), timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), cache=None) as client:
            listed = await client.list_tools()
            arguments = {"origin": "Hamburg", "destination": "Vienna"}
            called = await client.call_tool("route_distance", arguments)
            assert not called.is_error
            return [tool.name for tool in listed.tools], called.structured_content


def test_an_mcp_client_uses_the_built_in_catalog_through_the_gateway(
    stack: Stack, http: httpx.Client
) -> None:
    signed = sign_up(http, "mcp")
    url = f"{stack.config.gateway_url}/mcp"
    names, result = asyncio.run(_catalog(url, signed.token))
    assert names == [tool.id for tool in CATALOG.values()]
    assert result == route_distance({"origin": "Hamburg", "destination": "Vienna"})
    # Envoy's jwt_authn refuses a request without a valid token before it reaches the agent.
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"accept": "application/json, text/event-stream"}
    for headers in ({}, auth("not.a.jwt")):
        refused = http.post("/mcp", json=listing, headers={**headers, **accept})
        assert refused.status_code == 401, refused.text


def test_mcp_servers_over_rest_never_return_their_headers(stack: Stack, http: httpx.Client) -> None:
    signed = sign_up(http, "mcpsrv")
    headers = auth(signed.token)
    base = f"/v1/tenants/{signed.tenant}"
    made = http.post(
        f"{base}/mcpServers?mcpServerId=catalog",
        json={"url": f"{stack.config.gateway_url}/mcp", "headers": {"Authorization": "Bearer s3cr3t-value"}},
        headers=headers,
    )
    assert made.status_code == 200, made.text
    assert made.json()["headerNames"] == ["authorization"] and "headers" not in made.json()
    got = http.get(f"{base}/mcpServers/catalog", headers=headers)
    listed = http.get(f"{base}/mcpServers", headers=headers)
    tools = http.get(f"{base}/tools", headers=headers)
    for response in (made, got, listed, tools):
        assert response.status_code == 200, response.text
        assert "s3cr3t" not in response.text
    assert [t["name"] for t in http.get("/v1/tools", headers=headers).json()["tools"]] == [
        *CATALOG,
        SEND_NOTIFICATION,
    ]
    bad = http.post(f"{base}/mcpServers", json={"url": "ftp://example.com/mcp"}, headers=headers)
    assert bad.status_code == 400, bad.text
    ((sealed,),) = stored_rows(
        stack, "agent", "SELECT headers_sealed FROM mcp_servers WHERE tenant_id = :t", t=signed.tenant
    )
    assert b"s3cr3t" not in bytes(sealed)
    assert http.delete(f"{base}/mcpServers/catalog", headers=headers).status_code == 200
    assert http.get(f"{base}/mcpServers/catalog", headers=headers).status_code == 404
