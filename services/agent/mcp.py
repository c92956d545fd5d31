"""Tools of tenants' MCP servers: listing and calling them with the official ``mcp`` SDK.

A tenant registers MCP servers (``tenants/{t}/mcpServers/{s}``, streamable HTTP
transport, Model Context Protocol 2025-06-18 and later); their tools are named
``tenants/{t}/mcpServers/{s}/tools/{tool}`` and the model calls them by
:func:`function_name_of`. Each operation (a listing, a call) opens its own session
(``mcp.Client`` over ``streamable_http_client``) with the server's headers and closes
it; a whole operation, connection and handshake included, has one deadline
(``ORCHESTRALL_MCP_TIMEOUT_SECONDS``). Nothing is cached: a server's tools are asked
for when ``ListTools`` is called and when a run starts, so a change on the server (or
to its registration) shows at the next one, and there is no invalidation to get
wrong. The SDK's own response cache is switched off for the same reason.

A server that is slow, unreachable, answers with an HTTP or JSON-RPC error, with
something that is not MCP, or with a tool error fails the operation with
:class:`~services.agent.tools.ToolError` and a message for the model; nothing it does
can fail a run or the service.

Server-side request forgery (a tenant naming an internal address as its server's URL)
is guarded as for HTTP tools and notification channels, by the service's
:class:`~services.kit.egress.EgressPolicy`: a URL whose host is an address literal (or
``localhost``) the policy refuses is a field violation when it is written
(:func:`url_violations` with the policy), and every connection resolves the host, checks
each address and goes to the checked one, following no redirects; loopback, link-local
and private addresses are reached only when the operator's allow-list names them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import mcp_types
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import store
from services.agent.models import McpServerRow
from services.agent.tools import ToolError
from services.kit.db import Database
from services.kit.egress import EgressPolicy
from services.kit.errors import FieldViolation
from services.kit.names import ResourceName
from services.kit.sealing import Sealer

log = logging.getLogger(__name__)
T = TypeVar("T")

MCP_SERVER = ResourceName.of(res.McpServer)
#: ``tenants/{tenant}/mcpServers/{mcp_server}/tools/{tool}``, the second pattern of ``Tool``.
MCP_TOOL = ResourceName("tenants/{tenant}/mcpServers/{mcp_server}/tools/{tool}")
#: MCP tool names (the specification's recommendation, 2025-06-18 "Tool names").
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
#: What OpenAI's function calling accepts as a function name.
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: An HTTP field name (RFC 9110 section 5.1: a token).
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers the transport sets itself; a tenant's value would break or spoof the protocol.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "accept",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)
#: The most tools read of one server (and so offered in the catalog from it).
MAX_TOOLS_PER_SERVER = 128
#: The most characters of a tool's result, as JSON, that reach the model and the run.
MAX_RESULT_CHARS = 64_000
#: The most MCP servers of a tenant the catalog asks at once.
MAX_SERVERS = 100


def function_name_of(server_id: str, tool: str) -> str:
    """Returns the function name the model calls an MCP tool by: ``{server_id}__{tool}``.

    Characters outside ``[a-zA-Z0-9_-]`` become ``_``; a name over 64 characters
    keeps its first 55 and ends in ``_`` and 8 hexadecimal characters of the SHA-256
    of the full name, so it still matches OpenAI's ``^[a-zA-Z0-9_-]{1,64}$``.
    """
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", f"{server_id}__{tool}")
    if len(name) > 64:
        digest = hashlib.sha256(f"{server_id}/{tool}".encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


def url_violations(url: str, path: str, policy: EgressPolicy | None = None) -> list[FieldViolation]:
    """Returns what is wrong with a URL a tenant names: it must be absolute ``http(s)`` without user info.

    Args:
        url: The URL as written.
        path: Its field path in the request.
        policy: When given, a host the policy refuses without resolving it (an address
            literal, ``localhost``; :meth:`EgressPolicy.url_refusal`) is a violation too.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number in range raises ValueError
    except ValueError as error:
        return [FieldViolation(path, f"is not a URL: {error}")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            FieldViolation(path, "must be an absolute http or https URL, e.g. https://mcp.example.com/mcp")
        ]
    if "@" in parts.netloc:
        return [FieldViolation(path, "must not hold user information; send credentials in headers")]
    if any(c.isspace() for c in url):
        return [FieldViolation(path, "must not contain white space")]
    refusal = policy.url_refusal(url) if policy is not None else None
    return [FieldViolation(path, refusal)] if refusal else []


def header_violations(headers: Mapping[str, str], path: str) -> list[FieldViolation]:
    """Returns what is wrong with an MCP server's headers (names; the count is the contract's rule)."""
    violations = []
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            violations.append(FieldViolation(f"{path}[{name!r}]", "is not an HTTP header name (RFC 9110)"))
        elif name.lower() in RESERVED_HEADERS:
            violations.append(FieldViolation(f"{path}[{name!r}]", "is set by the MCP transport itself"))
        elif any(c in value for c in "\r\n"):
            violations.append(FieldViolation(f"{path}[{name!r}]", "must not contain line breaks"))
    lowered = [name.lower() for name in headers]
    if len(set(lowered)) != len(lowered):
        violations.append(FieldViolation(path, "names a header twice (names are case-insensitive)"))
    return violations


def allowed_tool_violations(tools: Sequence[str], path: str) -> list[FieldViolation]:
    """Returns what is wrong with ``allowed_tools``: each an MCP tool name, none twice."""
    violations = [
        FieldViolation(f"{path}[{i}]", "is not an MCP tool name (1-128 of A-Za-z0-9_.-)")
        for i, tool in enumerate(tools)
        if not TOOL_NAME.match(tool)
    ]
    if len(set(tools)) != len(tools):
        violations.append(FieldViolation(path, "names a tool twice"))
    return violations


def seal_headers(sealer: Sealer, server_name: str, headers: Mapping[str, str]) -> bytes:
    """Returns the headers as a JSON object sealed for the server ``server_name`` (its resource name)."""
    return sealer.seal(json.dumps(dict(headers), sort_keys=True).encode(), server_name)


def open_headers(sealer: Sealer, server_name: str, sealed: bytes) -> dict[str, str]:
    """Returns the headers :func:`seal_headers` sealed for ``server_name``.

    Raises:
        services.kit.sealing.SealError: They do not open (another key, another server's row).
    """
    headers: dict[str, str] = json.loads(sealer.open(sealed, server_name))
    return headers


@dataclass(frozen=True)
class McpEndpoint:
    """A registered MCP server as the client reaches it: its URL and its headers in the clear.

    Attributes:
        name: Resource name, ``tenants/{tenant}/mcpServers/{mcp_server}``.
        server_id: Its ID, the ``{mcp_server}`` of the name.
        url: Streamable HTTP endpoint.
        headers: Sent with every request; never logged.
        allowed_tools: The tools agents may use; empty means all.
    """

    name: str
    server_id: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    allowed_tools: tuple[str, ...] = ()

    def allows(self, tool: str) -> bool:
        """Whether agents may use the server's tool ``tool``."""
        return not self.allowed_tools or tool in self.allowed_tools

    @classmethod
    def of(cls, row: McpServerRow, sealer: Sealer) -> McpEndpoint:
        """Returns the endpoint of a stored server, its headers opened.

        Raises:
            services.kit.sealing.SealError: The headers do not open.
        """
        name = MCP_SERVER.format(row.tenant_id, row.id)
        headers = open_headers(sealer, name, row.headers_sealed)
        return cls(name, row.id, row.url, headers, tuple(row.allowed_tools))


class McpClient:
    """Lists and calls the tools of MCP servers, each operation within ``timeout_seconds``.

    Args:
        timeout_seconds: Deadline of one listing or call: connecting, the protocol
            handshake and the answer together.
        policy: The outbound rules every connection to a server keeps to.
    """

    def __init__(self, timeout_seconds: float, policy: EgressPolicy) -> None:
        self.timeout_seconds = timeout_seconds
        self.policy = policy

    async def list_tools(self, endpoint: McpEndpoint) -> list[mcp_types.Tool]:
        """Returns the server's tools that agents may use (``allowed_tools``), in the server's order.

        Reads at most :data:`MAX_TOOLS_PER_SERVER` tools, over the server's pages; tools
        whose names are not MCP tool names are left out.

        Raises:
            ToolError: The server did not answer in time, failed, or answered something
                that is not MCP.
        """

        async def work(client: Client) -> list[mcp_types.Tool]:
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            while len(tools) < MAX_TOOLS_PER_SERVER:
                page = await client.list_tools(cursor=cursor)
                tools += [t for t in page.tools if TOOL_NAME.match(t.name) and endpoint.allows(t.name)]
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools[:MAX_TOOLS_PER_SERVER]

        return await self._with_session(endpoint, "list its tools", work)

    async def call_tool(self, endpoint: McpEndpoint, tool: str, arguments: dict[str, Any]) -> Any:
        """Calls the server's tool ``tool`` and returns its result as a JSON value.

        The result is the tool's ``structuredContent`` when it has one, else its content
        (one value, or a list for several blocks; see :func:`_result_value`).

        Raises:
            ToolError: The tool is not allowed, reported an error (``isError``), or the
                server did not answer in time, failed, or answered something that is not MCP.
        """
        if not endpoint.allows(tool):
            raise ToolError(f"{endpoint.name} does not allow its tool {tool!r}")

        async def work(client: Client) -> mcp_types.CallToolResult:
            return await client.call_tool(tool, arguments)

        result = await self._with_session(endpoint, f"call its tool {tool!r}", work)
        value = _result_value(result)
        if result.is_error:
            text = value if isinstance(value, str) else json.dumps(value)
            raise ToolError(f"the tool {tool!r} of {endpoint.name} failed: {text[:2000]}")
        return value

    async def _with_session(
        self, endpoint: McpEndpoint, what: str, work: Callable[[Client], Awaitable[T]]
    ) -> T:
        """Runs ``work(client)`` on a new session with the server, within the deadline.

        Raises:
            ToolError: For anything that goes wrong, with a message naming the server (never its headers).
        """
        timeout = self.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                async with self.policy.httpx2_client(timeout, dict(endpoint.headers)) as http:
                    transport = streamable_http_client(endpoint.url, http_client=http)
                    async with Client(transport, cache=None, read_timeout_seconds=timeout) as client:
                        return await work(client)
        except ToolError:
            raise
        except Exception as error:  # ours, the SDK's, httpx2's, or an ExceptionGroup of its task group
            if isinstance(_innermost(error), (TimeoutError, httpx2.TimeoutException)):
                # Our deadline and the client's read timeout are the same length; whichever
                # the event loop wakes first, the server did not answer in time.
                raise ToolError(
                    f"the MCP server {endpoint.name} did not answer within {timeout:g} s when asked to {what}"
                ) from None
            log.info("MCP server %s failed to %s: %s", endpoint.name, what, _describe(error))
            raise ToolError(
                f"the MCP server {endpoint.name} failed when asked to {what}: {_describe(error)}"
            ) from None


def _innermost(error: BaseException) -> BaseException:
    """The first error inside nested exception groups, or ``error`` itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    """A short description of an error, the innermost of exception groups."""
    error = _innermost(error)
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]


def _result_value(result: mcp_types.CallToolResult) -> Any:
    """The JSON value of a tool's result: ``structuredContent``, else its content blocks.

    A text block that holds a JSON document is that document (servers often send their
    result so); other text stays text; other blocks are their JSON.
    """
    if result.structured_content is not None:
        return result.structured_content
    values: list[Any] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            try:
                values.append(json.loads(block.text))
            except ValueError:
                values.append(block.text)
        else:
            values.append(block.model_dump(mode="json", by_alias=True, exclude_none=True))
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class McpTool:
    """One tool of a tenant's MCP server as a run offers and calls it.

    The runner treats it like a built-in :class:`services.agent.tools.Tool`: it offers
    ``function_name`` with ``description`` and ``parameters``, checks arguments with
    ``validator`` and awaits :meth:`call`.

    Attributes:
        name: Resource name, ``tenants/{tenant}/mcpServers/{mcp_server}/tools/{tool}``.
        function_name: What the model calls it by (:func:`function_name_of`).
        description: The server's description of the tool.
        parameters: JSON Schema of its arguments (its ``inputSchema``).
        validator: Checks arguments against ``parameters`` (JSON Schema 2020-12).
        tool: Its name on the server.
        endpoint: The server; None when it could not be reached or read (``failure`` says why).
        client: The client that calls it.
        failure: Why the tool cannot be called (unregistered server, tool not allowed or
            not offered, server unavailable when the run started); every call then fails so.
    """

    name: str
    function_name: str
    description: str
    parameters: dict[str, Any]
    validator: Draft202012Validator = field(repr=False, compare=False)
    tool: str = ""
    endpoint: McpEndpoint | None = field(default=None, repr=False)
    client: McpClient | None = field(default=None, repr=False, compare=False)
    failure: str = ""

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Calls the tool with validated ``arguments``; returns its result, a JSON value.

        Raises:
            ToolError: The tool cannot be called, failed, or its result is over
                :data:`MAX_RESULT_CHARS` characters as JSON.
        """
        if self.failure or self.endpoint is None or self.client is None:
            raise ToolError(self.failure or f"{self.name} cannot be called")
        result = await self.client.call_tool(self.endpoint, self.tool, arguments)
        try:
            size = len(json.dumps(result, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ToolError(f"the tool {self.name} returned a result that is not JSON ({error})") from None
        if size > MAX_RESULT_CHARS:
            raise ToolError(f"the tool {self.name} returned {size} characters, over {MAX_RESULT_CHARS}")
        return result


_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _failing(name: str, function_name: str, failure: str) -> McpTool:
    return McpTool(
        name=name,
        function_name=function_name,
        description="Unavailable.",
        parameters=_ANY_OBJECT,
        validator=Draft202012Validator(_ANY_OBJECT),
        failure=failure,
    )


def _offered(endpoint: McpEndpoint, tool: mcp_types.Tool, client: McpClient) -> McpTool:
    name = f"{endpoint.name}/tools/{tool.name}"
    function_name = function_name_of(endpoint.server_id, tool.name)
    schema = dict(tool.input_schema)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return _failing(name, function_name, f"the tool's inputSchema is not a JSON Schema: {error.message}")
    return McpTool(
        name=name,
        function_name=function_name,
        description=(tool.description or tool.title or tool.name)[:2000],
        parameters=schema,
        validator=Draft202012Validator(schema),
        tool=tool.name,
        endpoint=endpoint,
        client=client,
    )


async def catalog_of(endpoints: Sequence[McpEndpoint], client: McpClient) -> tuple[list[McpTool], list[str]]:
    """Returns the tools of the servers, asked all at once, and the names of those that failed.

    Returns:
        The tools agents may use, by server (in the order given) and then in each
        server's order; and the names of the servers that could not be listed.
    """
    listings = await asyncio.gather(
        *(client.list_tools(endpoint) for endpoint in endpoints), return_exceptions=True
    )
    tools: list[McpTool] = []
    failed: list[str] = []
    for endpoint, listing in zip(endpoints, listings, strict=True):
        if isinstance(listing, BaseException):
            if not isinstance(listing, ToolError):
                raise listing
            failed.append(endpoint.name)
            continue
        tools += [_offered(endpoint, tool, client) for tool in listing]
    return tools, failed


def is_mcp_tool(name: str) -> bool:
    """Whether ``name`` is of the pattern of an MCP tool (``tenants/*/mcpServers/*/tools/*``)."""
    return name.startswith("tenants/") and name.count("/") == 5 and "/mcpServers/" in name


async def resolve_tools(
    db: Database, sealer: Sealer, client: McpClient, tenant_id: str, tool_names: Sequence[str]
) -> list[McpTool]:
    """Returns the MCP tools among an agent's tools, ready to offer and call, in the agent's order.

    Each server named is read from the tenant's store and asked for its tools once,
    all at once. A tool that cannot be offered properly (its server is gone, or not
    of the tenant, the tool is not allowed or not offered, the server fails to list
    its tools) is still returned, with ``failure`` set: the model may call it and gets
    the reason as the tool's error, so the run goes on.

    Args:
        db: The agent database.
        sealer: Opens the servers' stored headers.
        client: Lists and calls the tools.
        tenant_id: The agent's tenant.
        tool_names: The agent's ``tools``; names that are not MCP tools are skipped.
    """
    wanted: list[tuple[str, str, str]] = []  # (name, server ID, tool)
    for name in tool_names:
        if not is_mcp_tool(name):
            continue
        tenant, server_id, tool = name.split("/")[1::2]
        wanted.append((name, server_id, tool) if tenant == tenant_id else (name, "", tool))
    if not wanted:
        return []
    rows = await db.read(tenant_id, store.get_mcp_servers, [s for _, s, _ in wanted if s])
    endpoints: dict[str, McpEndpoint] = {}
    broken: dict[str, str] = {}
    for row in rows:
        try:
            endpoints[row.id] = McpEndpoint.of(row, sealer)
        except Exception:  # a key change: the headers do not open
            log.warning("the stored headers of MCP server %s do not open", row.id)
            broken[row.id] = "the MCP server's stored headers cannot be read; register them again"
    listed = await asyncio.gather(
        *(client.list_tools(endpoint) for endpoint in endpoints.values()), return_exceptions=True
    )
    offered: dict[str, dict[str, mcp_types.Tool]] = {}
    for endpoint, listing in zip(endpoints.values(), listed, strict=True):
        if isinstance(listing, ToolError):
            broken[endpoint.server_id] = str(listing)
        elif isinstance(listing, BaseException):
            raise listing
        else:
            offered[endpoint.server_id] = {tool.name: tool for tool in listing}
    resolved: list[McpTool] = []
    taken: set[str] = set()
    for name, server_id, tool in wanted:
        function_name = function_name_of(server_id or "other", tool)
        if function_name in taken:  # two names that sanitize alike
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            function_name = f"{function_name[:55]}_{digest}"
        taken.add(function_name)
        server = endpoints.get(server_id)
        if server is None:
            unregistered = f"{name.rsplit('/tools/', 1)[0]} is not a registered MCP server"
            resolved.append(_failing(name, function_name, broken.get(server_id) or unregistered))
        elif server_id in broken:
            resolved.append(_failing(name, function_name, broken[server_id]))
        elif not server.allows(tool):
            not_allowed = f"{server.name} does not allow its tool {tool!r}"
            resolved.append(_failing(name, function_name, not_allowed))
        elif tool not in offered[server_id]:
            resolved.append(_failing(name, function_name, f"{server.name} offers no tool {tool!r}"))
        else:
            tool_of_server = _offered(server, offered[server_id][tool], client)
            resolved.append(dataclasses.replace(tool_of_server, function_name=function_name))
    return resolved
