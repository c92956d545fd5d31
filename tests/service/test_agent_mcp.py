"""MCP tools over real gRPC: a real MCP server (``mcp`` SDK, streamable HTTP, 127.0.0.1), the real model.

A tenant registers the server, sees its tools in its catalog, and an agent calls one; a
slow, broken or unreachable server fails that tool call and the run still finishes; the
server's headers are sent to it, stored encrypted and never returned.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import httpx2
import pytest
import uvicorn
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from sqlalchemy import select

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent.models import McpServer
from services.agent.notifications.handlers import SEND_NOTIFICATION
from services.agent.server import AgentSettings, build
from services.agent.tools import CATALOG, route_distance
from services.cli.stack import free_port
from services.kit import mtls
from services.kit.db import create_engine
from services.kit.server import RunningServer, start
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_replica,
    error_info,
    field_violations,
    new_tenant,
    run_to_end,
)

#: The built-in tools, in ListTools' order: the catalog's, then send_notification.
BUILT_IN = [*CATALOG, SEND_NOTIFICATION]

SECRET = "Bearer fleet-secret-4711"
#: The replica's deadline for one MCP request, in seconds.
MCP_TIMEOUT = 1.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class FleetServer:
    """A real MCP server in this process and what it received."""

    url: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def _fleet_app(fleet: FleetServer) -> Any:
    server = MCPServer("fleet")

    @server.tool()
    def lookup_hub(hub: Literal["Rotterdam"]) -> dict[str, str]:
        """Looks up a logistics hub: its country and the dock open now."""
        fleet.calls.append(("lookup_hub", {"hub": hub}))
        return {"hub": hub, "country": "NL", "dock": "D7"}

    @server.tool()
    async def slow_hub(hub: Literal["Rotterdam"]) -> str:
        """Looks up a hub, slowly (it answers only when the test ends)."""
        fleet.calls.append(("slow_hub", {"hub": hub}))
        await fleet.release.wait()
        return "too late"

    @server.tool()
    def broken_hub(hub: Literal["Rotterdam"]) -> str:
        """Looks up a hub, and fails."""
        fleet.calls.append(("broken_hub", {"hub": hub}))
        raise RuntimeError("the hub registry is down")

    app = server.streamable_http_app()

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            fleet.authorizations.append(headers.get(b"authorization", b"").decode())
        await app(scope, receive, send)

    return recording


@pytest.fixture(scope="module")
async def fleet() -> AsyncIterator[FleetServer]:
    port = free_port()
    served = FleetServer(url=f"http://127.0.0.1:{port}/mcp")
    config = uvicorn.Config(
        _fleet_app(served), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the MCP server did not start"
        await asyncio.sleep(0.05)
    yield served
    served.release.set()
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def replica(mesh: Mesh, model_url: str) -> AsyncIterator[RunningServer]:
    """An agent replica whose MCP requests have a deadline of :data:`MCP_TIMEOUT` seconds."""
    base = mesh.config.settings("agent").model_copy(
        update={"tls_dir": mesh.tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
    )
    settings = AgentSettings(**base.model_dump(), openai_base_url=model_url, mcp_timeout_seconds=MCP_TIMEOUT)
    server = await start(*(await build(settings)))
    yield server
    await server.stop(0)


@pytest.fixture
async def stub(mesh: Mesh, replica: RunningServer) -> AsyncIterator[pb_grpc.AgentServiceStub]:
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{replica.port}",
        mtls.channel_credentials(mtls.TlsFiles.of(mesh.tls_dir, "gateway")),
        options=[("grpc.ssl_target_name_override", "agent")],
    ) as channel:
        yield pb_grpc.AgentServiceStub(channel)


async def _register(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, server_id: str, url: str, **fields: Any
) -> res.McpServer:
    return await stub.CreateMcpServer(
        pb.CreateMcpServerRequest(
            parent=tenant.name,
            mcp_server=res.McpServer(url=url, **fields),
            mcp_server_id=server_id,
        ),
        metadata=tenant.metadata,
    )


async def _run_with(stub: pb_grpc.AgentServiceStub, tenant: Tenant, tool: str) -> res.Run:
    """Creates an agent that must call ``tool`` (its only tool) and runs it once."""
    agent = await stub.CreateAgent(
        pb.CreateAgentRequest(
            parent=tenant.name,
            agent=res.Agent(
                instructions="You are a dispatcher. Look the hub up, then answer in one short sentence.",
                tools=[tool],
                tool_choice=res.TOOL_CHOICE_REQUIRED,
                temperature=0,
                max_output_tokens=32,
            ),
        ),
        metadata=tenant.metadata,
    )
    run = await run_to_end(
        stub,
        pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Which dock is open at the Rotterdam hub?")),
        tenant.metadata,
    )
    assert run.state == res.Run.STATE_SUCCEEDED, run.error
    assert run.tool_calls, "TOOL_CHOICE_REQUIRED with one tool makes the model call it"
    return run


def _stored_headers(mesh: Mesh, tenant: Tenant) -> list[tuple[list[str], bytes]]:
    """The header columns of the tenant's MCP server rows, read as the database's owner."""
    engine = create_engine(mesh.config.settings("agent"), "agent", admin=True)
    table = McpServer.__table__
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(table.c.header_names, table.c.headers_sealed).where(table.c.tenant_id == tenant.id)
            ).all()
    finally:
        engine.dispose()
    return [(list(names), bytes(sealed)) for names, sealed in rows]


async def test_an_agent_calls_a_tool_of_a_registered_mcp_server(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, fleet: FleetServer
) -> None:
    tenant = await new_tenant(mesh)
    md = tenant.metadata
    server = await _register(
        stub,
        tenant,
        "fleet",
        fleet.url,
        display_name="Fleet",
        headers={"Authorization": SECRET},
        allowed_tools=["lookup_hub", "slow_hub"],
    )
    assert server.name == f"{tenant.name}/mcpServers/fleet"
    assert list(server.header_names) == ["authorization"] and not server.headers

    catalog = await stub.ListTools(pb.ListToolsRequest(parent=tenant.name), metadata=md)
    tool_name = f"{server.name}/tools/lookup_hub"
    names = [t.name for t in catalog.tools]
    # The built-in tools first, then the server's allowed tools in its order; broken_hub is not allowed.
    assert names == [*BUILT_IN, tool_name, f"{server.name}/tools/slow_hub"]
    assert not catalog.unavailable_mcp_servers
    lookup = catalog.tools[len(BUILT_IN)]
    assert lookup.function_name == "fleet__lookup_hub"
    assert lookup.description.startswith("Looks up a logistics hub")
    assert dict(lookup.parameters)["required"] == ["hub"]
    built_in = await stub.ListTools(pb.ListToolsRequest(), metadata=md)
    assert [t.name for t in built_in.tools] == names[: len(BUILT_IN)]
    assert [t.function_name for t in built_in.tools] == [name.removeprefix("tools/") for name in BUILT_IN]
    paged, token = [], ""
    while True:  # pages of 3 across the built-in tools and the server's
        page = await stub.ListTools(
            pb.ListToolsRequest(parent=tenant.name, page_size=3, page_token=token), metadata=md
        )
        paged += [t.name for t in page.tools]
        if not (token := page.next_page_token):
            break
    assert paged == names

    before = len(fleet.calls)
    run = await _run_with(stub, tenant, tool_name)
    (call,) = run.tool_calls
    assert call.tool == tool_name and not call.failed, call.result
    assert json.loads(call.result) == {"hub": "Rotterdam", "country": "NL", "dock": "D7"}
    assert fleet.calls[before:] == [("lookup_hub", {"hub": "Rotterdam"})]
    assert SECRET in fleet.authorizations, "the registered headers reach the MCP server"

    # The secret is never returned, and is not stored in the clear.
    got = await stub.GetMcpServer(pb.GetMcpServerRequest(name=server.name), metadata=md)
    listed = await stub.ListMcpServers(pb.ListMcpServersRequest(parent=tenant.name), metadata=md)
    for message in (server, got, listed, catalog, run):
        assert b"fleet-secret" not in message.SerializeToString()
    ((stored_names, sealed),) = _stored_headers(mesh, tenant)
    assert stored_names == ["authorization"]
    assert b"fleet-secret" not in sealed and b"Bearer" not in sealed


async def test_a_slow_broken_or_unreachable_mcp_server_fails_only_that_tool_call(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, fleet: FleetServer
) -> None:
    tenant = await new_tenant(mesh)
    server = await _register(stub, tenant, "fleet", fleet.url)
    gone = await _register(stub, tenant, "gone", f"http://127.0.0.1:{free_port()}/mcp")
    catalog = await stub.ListTools(pb.ListToolsRequest(parent=tenant.name), metadata=tenant.metadata)
    assert list(catalog.unavailable_mcp_servers) == [gone.name]
    assert f"{server.name}/tools/broken_hub" in [t.name for t in catalog.tools]

    slow = await _run_with(stub, tenant, f"{server.name}/tools/slow_hub")
    assert slow.tool_calls[0].failed
    assert f"did not answer within {MCP_TIMEOUT:g} s" in json.loads(slow.tool_calls[0].result)["error"]

    broken = await _run_with(stub, tenant, f"{server.name}/tools/broken_hub")
    assert broken.tool_calls[0].failed
    assert "the tool 'broken_hub'" in json.loads(broken.tool_calls[0].result)["error"]

    # The agent was valid when made; its server went away since: the call fails, the run finishes.
    unreachable = await _run_with(stub, tenant, f"{gone.name}/tools/lookup_hub")
    (call,) = unreachable.tool_calls
    assert call.failed and call.tool == f"{gone.name}/tools/lookup_hub"
    assert f"the MCP server {gone.name} failed" in json.loads(call.result)["error"]


async def test_mcp_servers_are_created_once_updated_and_deleted(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, fleet: FleetServer
) -> None:
    tenant = await new_tenant(mesh)
    md = tenant.metadata
    request = pb.CreateMcpServerRequest(
        parent=tenant.name,
        mcp_server=res.McpServer(url=fleet.url, headers={"X-Api-Key": "k1"}),
        mcp_server_id="fleet",
        request_id="once",
    )
    made = await stub.CreateMcpServer(request, metadata=md)
    assert (await stub.CreateMcpServer(request, metadata=md)) == made
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateMcpServer(
            pb.CreateMcpServerRequest(
                parent=tenant.name, mcp_server=res.McpServer(url=fleet.url), mcp_server_id="fleet"
            ),
            metadata=md,
        )
    assert error_info(caught.value).reason == "MCP_SERVER_ALREADY_EXISTS"

    # A mask without headers keeps them; with headers, they are replaced.
    renamed = await stub.UpdateMcpServer(
        pb.UpdateMcpServerRequest(
            mcp_server=res.McpServer(name=made.name, display_name="Fleet", allowed_tools=["lookup_hub"]),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "allowed_tools"]),
        ),
        metadata=md,
    )
    assert renamed.display_name == "Fleet" and list(renamed.allowed_tools) == ["lookup_hub"]
    assert list(renamed.header_names) == ["x-api-key"] and renamed.url == fleet.url
    assert renamed.update_time.ToDatetime() >= made.update_time.ToDatetime()
    rekeyed = await stub.UpdateMcpServer(
        pb.UpdateMcpServerRequest(
            mcp_server=res.McpServer(name=made.name, headers={"Authorization": SECRET}),
            update_mask=field_mask_pb2.FieldMask(paths=["headers"]),
        ),
        metadata=md,
    )
    assert list(rekeyed.header_names) == ["authorization"]
    catalog = await stub.ListTools(pb.ListToolsRequest(parent=tenant.name), metadata=md)
    assert [t.name for t in catalog.tools][len(BUILT_IN) :] == [f"{made.name}/tools/lookup_hub"]

    # Agents may name allowed tools of the tenant's registered servers only.
    other = await new_tenant(mesh)
    foreign = await _register(stub, other, "fleet", fleet.url)
    for tool in (
        f"{made.name}/tools/broken_hub",  # not allowed
        f"{tenant.name}/mcpServers/nowhere/tools/lookup_hub",  # not registered
        f"{foreign.name}/tools/lookup_hub",  # another tenant's
        "tools/teleport",
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateAgent(
                pb.CreateAgentRequest(parent=tenant.name, agent=res.Agent(instructions="x", tools=[tool])),
                metadata=md,
            )
        assert field_violations(caught.value) == ["agent.tools[0]"], tool
    agent = await stub.CreateAgent(
        pb.CreateAgentRequest(
            parent=tenant.name, agent=res.Agent(instructions="x", tools=[f"{made.name}/tools/lookup_hub"])
        ),
        metadata=md,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateAgent(
            pb.UpdateAgentRequest(
                agent=res.Agent(name=agent.name, tools=[f"{foreign.name}/tools/lookup_hub"]),
                update_mask=field_mask_pb2.FieldMask(paths=["tools"]),
            ),
            metadata=md,
        )
    assert field_violations(caught.value) == ["agent.tools[0]"]

    # Another tenant sees nothing of it.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetMcpServer(pb.GetMcpServerRequest(name=made.name), metadata=other.metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    theirs = await stub.ListMcpServers(pb.ListMcpServersRequest(parent=other.name), metadata=other.metadata)
    assert [s.name for s in theirs.mcp_servers] == [foreign.name]

    await stub.DeleteMcpServer(pb.DeleteMcpServerRequest(name=made.name), metadata=md)
    for call in (
        stub.GetMcpServer(pb.GetMcpServerRequest(name=made.name), metadata=md),
        stub.DeleteMcpServer(pb.DeleteMcpServerRequest(name=made.name), metadata=md),
        stub.UpdateMcpServer(
            pb.UpdateMcpServerRequest(
                mcp_server=res.McpServer(name=made.name, display_name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=md,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert error_info(caught.value).reason == "MCP_SERVER_NOT_FOUND"
    assert _stored_headers(mesh, tenant) == []


@pytest.mark.parametrize(
    ("server", "server_id", "fields"),
    [
        (res.McpServer(url="ftp://mcp.example.com/mcp"), "", ["mcp_server.url"]),
        (res.McpServer(url="not a url"), "", ["mcp_server.url"]),
        (res.McpServer(), "", ["mcp_server.url"]),
        (res.McpServer(url="https://user:pw@mcp.example.com/mcp"), "", ["mcp_server.url"]),
        (res.McpServer(url="https://mcp.example.com/mcp"), "Not An Id", ["mcp_server_id"]),
        (
            res.McpServer(url="https://mcp.example.com/mcp", allowed_tools=["lookup_hub", "bad tool!"]),
            "",
            ["mcp_server.allowed_tools[1]"],
        ),
        (
            res.McpServer(url="https://mcp.example.com/mcp", headers={f"x-h{i}": "v" for i in range(17)}),
            "",
            ["mcp_server.headers"],
        ),
        (
            res.McpServer(url="https://mcp.example.com/mcp", headers={"Host": "evil.example"}),
            "",
            ["mcp_server.headers['Host']"],
        ),
        (
            res.McpServer(url="https://mcp.example.com/mcp", headers={"bad name": "v"}),
            "",
            ["mcp_server.headers['bad name']"],
        ),
    ],
    ids=[
        "ftp",
        "not a url",
        "no url",
        "user info",
        "bad id",
        "bad tool name",
        "17 headers",
        "reserved header",
        "bad header name",
    ],
)
async def test_bad_mcp_servers_are_invalid_arguments(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, server: res.McpServer, server_id: str, fields: list[str]
) -> None:
    tenant = await new_tenant(mesh)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateMcpServer(
            pb.CreateMcpServerRequest(parent=tenant.name, mcp_server=server, mcp_server_id=server_id),
            metadata=tenant.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == fields
    listed = await stub.ListMcpServers(pb.ListMcpServersRequest(parent=tenant.name), metadata=tenant.metadata)
    assert not listed.mcp_servers


def _violation_texts(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The field violations of an error's BadRequest detail, field to description."""
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Unpack(bad):
            return {v.field: v.description for v in bad.field_violations}
    return {}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.2:8000/mcp", "a loopback address"),  # the allow-list names 127.0.0.1 only
        ("http://169.254.169.254/latest/mcp", "a link-local address"),
        ("http://10.1.2.3/mcp", "a private address"),
        ("https://[::1]:8443/mcp", "a loopback address"),
        ("http://[::ffff:169.254.169.254]/mcp", "a link-local address"),
    ],
)
async def test_internal_mcp_server_urls_outside_the_allow_list_are_refused_when_written(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, fleet: FleetServer, url: str, reason: str
) -> None:
    tenant = await new_tenant(mesh)
    with pytest.raises(grpc.aio.AioRpcError) as created:
        await _register(stub, tenant, "internal", url)
    assert created.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    description = _violation_texts(created.value)["mcp_server.url"]
    assert reason in description and "which outbound calls may not reach" in description

    # An update to such a URL is refused alike, and the server keeps its URL.
    server = await _register(stub, tenant, "fleet", fleet.url)
    with pytest.raises(grpc.aio.AioRpcError) as updated:
        await stub.UpdateMcpServer(
            pb.UpdateMcpServerRequest(
                mcp_server=res.McpServer(name=server.name, url=url),
                update_mask=field_mask_pb2.FieldMask(paths=["url"]),
            ),
            metadata=tenant.metadata,
        )
    assert reason in _violation_texts(updated.value)["mcp_server.url"]
    got = await stub.GetMcpServer(pb.GetMcpServerRequest(name=server.name), metadata=tenant.metadata)
    assert got.url == fleet.url


async def test_without_the_allow_list_an_mcp_server_on_loopback_is_refused_when_connecting(
    mesh: Mesh, model_url: str, stub: pb_grpc.AgentServiceStub, fleet: FleetServer
) -> None:
    tenant = await new_tenant(mesh)
    # Registered while the allow-list named 127.0.0.1 (here: the fixture's replica, which does).
    server = await _register(stub, tenant, "fleet", fleet.url)
    by_name = await _register(stub, tenant, "by-name", fleet.url.replace("127.0.0.1", "localhost"))
    tool_name = f"{server.name}/tools/lookup_hub"
    strict = await agent_replica(mesh, model_url, egress_allowed_networks=[])
    try:
        async with agent_channel(mesh, strict) as channel:
            strict_stub = pb_grpc.AgentServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as written:
                await _register(strict_stub, tenant, "again", fleet.url)
            assert "a loopback address" in _violation_texts(written.value)["mcp_server.url"]

            before = list(fleet.calls)
            catalog = await strict_stub.ListTools(
                pb.ListToolsRequest(parent=tenant.name), metadata=tenant.metadata
            )
            assert sorted(catalog.unavailable_mcp_servers) == sorted([server.name, by_name.name])
            assert [t.name for t in catalog.tools] == BUILT_IN

            run = await _run_with(strict_stub, tenant, tool_name)
            (call,) = run.tool_calls
            assert call.failed and call.tool == tool_name
            error = json.loads(call.result)["error"]
            assert f"the MCP server {server.name} failed" in error
            assert "resolves to 127.0.0.1, a loopback address, which outbound calls may not reach" in error
            assert fleet.calls == before, "nothing reached the server"
    finally:
        await strict.stop(0)

    # The replica whose allow-list names 127.0.0.1 reaches the same server.
    run = await _run_with(stub, tenant, tool_name)
    assert not run.tool_calls[0].failed, run.tool_calls[0].result


@pytest.fixture(scope="module")
async def catalog_server(mesh: Mesh, model_url: str) -> AsyncIterator[str]:
    """An agent replica that serves the built-in catalog as an MCP server; yields its URL."""
    port = free_port()
    base = mesh.config.settings("agent").model_copy(
        update={"tls_dir": mesh.tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
    )
    settings = AgentSettings(**base.model_dump(), openai_base_url=model_url, mcp_listen=f"127.0.0.1:{port}")
    server = await start(*(await build(settings)))
    yield f"https://127.0.0.1:{port}/mcp"
    await server.stop(0)


def _gateway_tls(mesh: Mesh) -> ssl.SSLContext:
    """A client TLS context presenting the gateway's certificate, as Envoy does."""
    files = mtls.TlsFiles.of(mesh.tls_dir, "gateway")
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.cert), str(files.key))
    context.check_hostname = False  # the agent's certificate names "agent", not 127.0.0.1; the CA is checked
    return context


async def test_the_built_in_catalog_is_an_mcp_server(mesh: Mesh, catalog_server: str) -> None:
    tenant = await new_tenant(mesh)
    tls = _gateway_tls(mesh)
    async with httpx2.AsyncClient(verify=tls, headers={"authorization": f"Bearer {tenant.token}"}) as http:
        async with Client(streamable_http_client(catalog_server, http_client=http), cache=None) as client:
            listed = await client.list_tools()
            assert [t.name for t in listed.tools] == [tool.id for tool in CATALOG.values()]
            assert listed.tools[0].input_schema == CATALOG["tools/route_distance"].parameters
            arguments = {"origin": "Rotterdam", "destination": "Berlin"}
            result = await client.call_tool("route_distance", arguments)
            assert not result.is_error and result.structured_content == route_distance(arguments)
            bad = await client.call_tool("route_distance", {"origin": "Atlantis", "destination": "Berlin"})
            assert bad.is_error
            assert "JSON Schema at $.origin" in bad.content[0].text  # type: ignore[union-attr]
            unknown = await client.call_tool("teleport", {})
            assert unknown.is_error
    # The server checks the bearer token itself, not only the gateway.
    async with httpx2.AsyncClient(verify=tls) as http:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        for headers in ({}, {"authorization": "Bearer not.a.jwt"}):
            answer = await http.post(
                catalog_server,
                json=initialize,
                headers={**headers, "accept": "application/json, text/event-stream"},
            )
            assert answer.status_code == 401, headers
