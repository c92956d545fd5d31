"""The built-in tool catalog as an MCP server (streamable HTTP), for any MCP client.

The agent service serves it on its own port (``ORCHESTRALL_MCP_LISTEN``) with the
``mcp`` SDK's low-level :class:`mcp.server.Server` and its Starlette app under uvicorn;
the gateway routes ``/mcp`` to it. The tools are the catalog's
(:data:`services.agent.tools.CATALOG`), by ID, with their JSON Schemas; a call's
arguments are checked against the schema before the tool runs, and a bad call or a
failing tool is a tool error (``isError``), as MCP asks (specification 2025-06-18,
"Tools", error handling), never a protocol error.

Every request needs a bearer token that the gateway has verified (jwt_authn) and the
server verifies again (the SDK's bearer middleware over the kit's
:class:`~services.kit.auth.JwtVerifier`), whose roles grant ``agent.tools.list``; the
token's permissions are its MCP scopes. The transport is stateless (no MCP session
is kept), so any replica answers any request; responses are JSON, not SSE streams
(every tool answers at once). The listener takes mTLS with the agent's workload
certificate, as its gRPC port does; DNS rebinding protection is off because nothing is
served without a bearer token, which a browser does not attach by itself.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mcp_types
from jsonschema.exceptions import best_match
from mcp.server import Server
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings

from services.agent import tools as catalog
from services.kit.auth import JwtVerifier
from services.kit.errors import DomainError
from services.kit.http_listener import HttpListener
from services.kit.mtls import TlsFiles
from services.kit.roles import permissions_of

log = logging.getLogger(__name__)

#: The path the server answers on (and the gateway routes).
MCP_PATH = "/mcp"
#: What a token's roles must grant.
MCP_PERMISSION = "agent.tools.list"


class MeshTokenVerifier:
    """The SDK's ``TokenVerifier`` over the mesh's JWTs: their permissions are the token's scopes.

    Args:
        verifier: The service's JWT verifier (auth's JWKS).
    """

    def __init__(self, verifier: JwtVerifier) -> None:
        self._verifier = verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        """Returns the token's access info, or None when it is not a valid mesh token."""
        try:
            principal = await self._verifier.verify(token)
        except DomainError:
            return None
        return AccessToken(
            token=token,
            client_id=principal.subject,
            subject=principal.subject,
            scopes=sorted(permissions_of(principal.roles)),
            claims={"tenant": principal.tenant},
        )


def _tool_of(tool: catalog.Tool) -> mcp_types.Tool:
    return mcp_types.Tool(name=tool.id, description=tool.description, input_schema=tool.parameters)


_TOOLS = [_tool_of(tool) for tool in catalog.CATALOG.values()]


async def _list_tools(
    ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
) -> mcp_types.ListToolsResult:
    return mcp_types.ListToolsResult(tools=_TOOLS)


def _error(message: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=message)], is_error=True)


async def _call_tool(
    ctx: ServerRequestContext[Any], params: mcp_types.CallToolRequestParams
) -> mcp_types.CallToolResult:
    tool = catalog.CATALOG.get(f"tools/{params.name}")
    if tool is None:
        return _error(f"no tool named {params.name!r}")
    arguments = params.arguments or {}
    violation = best_match(tool.validator.iter_errors(arguments))
    if violation is not None:
        return _error(
            f"the arguments do not match the tool's JSON Schema at {violation.json_path}: {violation.message}"
        )
    try:
        result = await tool.call(arguments)
        text = json.dumps(result, allow_nan=False)
    except catalog.ToolError as error:
        return _error(str(error))
    except Exception as error:  # a broken tool fails its call, never the server
        log.warning("tool %s raised", tool.id, exc_info=True)
        return _error(f"the tool failed ({type(error).__name__})")
    structured = result if isinstance(result, dict) else None
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=text)], structured_content=structured
    )


def catalog_app(verifier: JwtVerifier, issuer: str) -> Any:
    """Returns the ASGI app of the catalog's MCP server at :data:`MCP_PATH`.

    Args:
        verifier: Verifies the bearer tokens.
        issuer: The tokens' issuer (named in the SDK's auth settings).
    """
    server: Server[Any] = Server(
        "orchestrall-tools",
        version="1",
        instructions="Orchestrall's built-in tools: logistics route distances and invoice totals.",
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
    )
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=True,
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        auth=AuthSettings(issuer_url=issuer, resource_server_url=None, required_scopes=[MCP_PERMISSION]),
        token_verifier=MeshTokenVerifier(verifier),
    )


class CatalogServer(HttpListener):
    """Runs :func:`catalog_app` under uvicorn on ``listen``, with mTLS when ``tls`` is given.

    Args:
        listen: ``host:port`` to bind.
        verifier: Verifies the bearer tokens.
        issuer: The tokens' issuer.
        tls: The agent's workload certificate; clients must present one of the same CA.
    """

    def __init__(self, listen: str, verifier: JwtVerifier, issuer: str, tls: TlsFiles | None) -> None:
        super().__init__("MCP catalog server", catalog_app(verifier, issuer), listen, tls, lifespan="on")
