"""Tenants' HTTP tools: a tool that is one HTTP call to the tenant's own API.

A tenant defines ``tenants/{t}/httpTools/{tool}``: a method, a URL template (RFC 6570
levels 1 and 2, expanded by the ``uritemplate`` library), the JSON Schema of the
arguments (checked with ``jsonschema`` when the tool is written and on every call), an
auth header whose value is sealed at rest (:mod:`services.kit.sealing`, bound to the
tool's name), a timeout and a limit on the answer's size. Agents name the tool by its
resource name; the model calls it as ``http__{tool}``.

A call expands the template with the arguments it names; for ``POST``, ``PUT`` and
``PATCH`` the other arguments are the JSON body. It goes out through the service's
:class:`~services.kit.egress.EgressPolicy` (resolved, checked, pinned; no redirects).
An endpoint that is refused, unreachable, slow, answers with an HTTP error or with
more than the limit fails the call with :class:`~services.agent.tools.ToolError` and a
message for the model; the run goes on. Nothing is cached: a run reads its HTTP
tools when each stretch of its work starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from uritemplate import URITemplate

from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import http_tool_store, mcp
from services.agent.models import HttpToolRow
from services.agent.tools import ToolError
from services.kit.db import Database
from services.kit.egress import EgressPolicy, EgressRefused
from services.kit.errors import FieldViolation
from services.kit.names import ResourceName
from services.kit.sealing import Sealer

log = logging.getLogger(__name__)

HTTP_TOOL = ResourceName.of(res.HttpTool)
METHODS = {
    res.HttpTool.METHOD_GET: "GET",
    res.HttpTool.METHOD_POST: "POST",
    res.HttpTool.METHOD_PUT: "PUT",
    res.HttpTool.METHOD_PATCH: "PATCH",
    res.HttpTool.METHOD_DELETE: "DELETE",
}
METHOD_VALUES = {text: value for value, text in METHODS.items()}
#: Methods whose unused arguments are sent as a JSON body.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 262_144
#: RFC 6570 operators of levels 1 (simple) and 2 (reserved ``+``, fragment ``#``).
LEVEL_2_OPERATORS = frozenset({"", "+", "#"})
_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
#: Headers the client sets itself; an auth header of these names would break or spoof the call.
RESERVED_HEADERS = frozenset({"host", "content-type", "content-length", "connection", "transfer-encoding"})


def function_name_of(tool_id: str) -> str:
    """Returns what the model calls an HTTP tool: ``http__{tool}`` (cut and hashed past 64 characters)."""
    return mcp.function_name_of("http", tool_id)


def template_violations(template: str, properties: Mapping[str, Any], path: str) -> list[FieldViolation]:
    """Returns what is wrong with a URL template.

    It must be RFC 6570 of level 1 or 2 (``{var}``, ``{+var}``, ``{#var}``, one
    variable per expression, no modifiers), each variable a property of the
    arguments' schema, the scheme and host fixed (no expression before the path), and
    its expansion an absolute ``http`` or ``https`` URL without user information.
    """
    expressions = _EXPRESSION.findall(template)
    if "{" in _EXPRESSION.sub("", template) or "}" in _EXPRESSION.sub("", template):
        return [FieldViolation(path, "has an unbalanced '{' or '}' (RFC 6570)")]
    violations = []
    for expression in expressions:
        operator = expression[:1] if expression[:1] in "+#./;?&=,!@|" else ""
        name = expression[len(operator) :]
        if operator not in LEVEL_2_OPERATORS:
            violations.append(
                FieldViolation(
                    path, f"{{{expression}}} uses operator {operator!r}; only levels 1-2 (none, + or #)"
                )
            )
        elif not _VARIABLE_NAME.match(name):
            violations.append(
                FieldViolation(
                    path, f"{{{expression}}} must name one variable of A-Za-z0-9_, without modifiers"
                )
            )
        elif name not in properties:
            violations.append(FieldViolation(path, f"the variable {name!r} is not a property of parameters"))
    if violations:
        return violations
    scheme, separator, rest = template.partition("://")
    if not separator or "{" in scheme or "{" in rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
        return [
            FieldViolation(path, "must start with a fixed scheme and host, e.g. https://api.example.com/")
        ]
    sample = URITemplate(template).expand({name.lstrip("+#"): "x" for name in expressions})
    return mcp.url_violations(sample, path)


def parameter_violations(schema: Mapping[str, Any], path: str) -> list[FieldViolation]:
    """Returns what is wrong with the arguments' schema: a JSON Schema (2020-12) of ``"type": "object"``."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        return [FieldViolation(f"{path}{where}", f"is not a JSON Schema (2020-12): {error.message[:300]}")]
    if schema.get("type") != "object":
        return [FieldViolation(f"{path}.type", 'must be "object": a tool takes an object of arguments')]
    return []


def header_violations(name: str, value: str, path: str) -> list[FieldViolation]:
    """Returns what is wrong with the auth header: a name of RFC 9110 the client does not set."""
    if not name:
        return [FieldViolation(f"{path}_name", "is required with a value")] if value else []
    if not mcp.HEADER_NAME.match(name):
        return [FieldViolation(f"{path}_name", "is not an HTTP header name (RFC 9110)")]
    if name.lower() in RESERVED_HEADERS:
        return [FieldViolation(f"{path}_name", "is set by the HTTP client itself")]
    if any(c in value for c in "\r\n"):
        return [FieldViolation(f"{path}_value", "must not contain line breaks")]
    return []


def seal_auth(sealer: Sealer, tool_name: str, value: str) -> bytes | None:
    """Returns the auth header's value sealed for the tool ``tool_name``; None for no value."""
    return sealer.seal(value.encode(), tool_name) if value else None


@dataclass(frozen=True)
class HttpEndpoint:
    """An HTTP tool as a call makes it, its auth header in the clear.

    Attributes:
        name: Resource name, ``tenants/{tenant}/httpTools/{http_tool}``.
        method: ``GET``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
        url_template: RFC 6570 template, levels 1-2.
        headers: The auth header (none or one); never logged.
        timeout_seconds: Deadline of the whole call.
        max_response_bytes: The most bytes of the answer's body.
    """

    name: str
    method: str
    url_template: str
    headers: Mapping[str, str] = field(repr=False)
    timeout_seconds: float
    max_response_bytes: int

    @classmethod
    def of(cls, row: HttpToolRow, sealer: Sealer) -> HttpEndpoint:
        """Returns the endpoint of a stored tool, its auth header opened.

        Raises:
            services.kit.sealing.SealError: The header's value does not open.
        """
        name = HTTP_TOOL.format(row.tenant_id, row.id)
        headers = {}
        if row.auth_header_name and row.auth_sealed is not None:
            headers[row.auth_header_name] = sealer.open(row.auth_sealed, name).decode()
        return cls(name, row.method, row.url_template, headers, row.timeout_seconds, row.max_response_bytes)

    def request_of(self, arguments: Mapping[str, Any]) -> tuple[str, Any]:
        """Returns the URL and the JSON body (None for none) of a call with ``arguments``."""
        template = URITemplate(self.url_template)
        named = template.variable_names
        values: dict[str, Any] = {k: _text(v) for k, v in arguments.items() if k in named and v is not None}
        body = {k: v for k, v in arguments.items() if k not in named} if self.method in BODY_METHODS else None
        return template.expand(values), body

    async def call(self, policy: EgressPolicy, arguments: Mapping[str, Any]) -> Any:
        """Makes the call and returns the answer: its JSON, or its text when it is not JSON.

        Raises:
            ToolError: Refused by the outbound rules, unreachable, over the timeout, a
                redirect or an HTTP error status, or an answer over the size limit.
        """
        url, body = self.request_of(arguments)
        timeout = self.timeout_seconds
        try:
            async with asyncio.timeout(timeout), policy.client(timeout) as client:
                request = client.build_request(self.method, url, headers=dict(self.headers), json=body)
                response = await client.send(request, stream=True)
                try:
                    data = await _read_limited(response, self.max_response_bytes)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise ToolError(f"{self.name} did not answer within {timeout:g} s") from None
        except EgressRefused as error:
            raise ToolError(f"{self.name} may not be called: {error}") from None
        except httpx.HTTPError as error:
            log.info("HTTP tool %s failed: %s", self.name, type(error).__name__)
            raise ToolError(f"{self.name} could not be reached: {type(error).__name__}") from None
        text = data.decode("utf-8", errors="replace")
        if response.is_redirect:
            raise ToolError(
                f"{self.name} answered a redirect (HTTP {response.status_code}), which is not followed"
            )
        if not response.is_success:
            raise ToolError(f"{self.name} answered HTTP {response.status_code}: {text[:1000]}")
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:
            return text[: mcp.MAX_RESULT_CHARS]


def _text(value: Any) -> str:
    """A template value: strings as they are, anything else as its JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    """Returns the body, reading at most ``limit`` bytes of it.

    Raises:
        ToolError: The body is longer than ``limit``.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ToolError(f"the answer has {declared} bytes, over the tool's limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ToolError(f"the answer is over the tool's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class HttpTool:
    """One HTTP tool as a run offers and calls it (a :class:`services.agent.runner.RunTool`).

    Attributes:
        name: Resource name, ``tenants/{tenant}/httpTools/{http_tool}``.
        function_name: What the model calls it by (:func:`function_name_of`).
        description: The tenant's description.
        parameters: JSON Schema of its arguments.
        validator: Checks arguments against ``parameters``.
        endpoint: The call; None when the tool cannot be called (``failure`` says why).
        policy: The outbound rules the call keeps to.
        failure: Why every call fails (a deleted tool, another tenant's, a secret that does not open).
    """

    name: str
    function_name: str
    description: str
    parameters: dict[str, Any]
    validator: Draft202012Validator = field(repr=False, compare=False)
    endpoint: HttpEndpoint | None = field(default=None, repr=False)
    policy: EgressPolicy | None = field(default=None, repr=False, compare=False)
    failure: str = ""

    @classmethod
    def of(cls, row: HttpToolRow, sealer: Sealer, policy: EgressPolicy) -> HttpTool:
        """Returns the tool of a stored row; one that fails every call when its secret does not open."""
        name = HTTP_TOOL.format(row.tenant_id, row.id)
        try:
            endpoint: HttpEndpoint | None = HttpEndpoint.of(row, sealer)
            failure = ""
        except Exception:  # a key change: the stored header does not open
            log.warning("the stored auth header of HTTP tool %s does not open", name)
            endpoint, failure = None, "the tool's stored auth header cannot be read; set it again"
        return cls(
            name=name,
            function_name=function_name_of(row.id),
            description=row.description,
            parameters=row.parameters,
            validator=Draft202012Validator(row.parameters),
            endpoint=endpoint,
            policy=policy,
            failure=failure,
        )

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Calls the endpoint with validated ``arguments``; returns its answer, a JSON value.

        Raises:
            ToolError: The tool cannot be called, or the call failed.
        """
        if self.endpoint is None or self.policy is None:
            raise ToolError(self.failure)
        return await self.endpoint.call(self.policy, arguments)


def _failing(name: str, function_name: str, failure: str) -> HttpTool:
    schema: dict[str, Any] = {"type": "object"}
    return HttpTool(name, function_name, failure, schema, Draft202012Validator(schema), failure=failure)


def is_http_tool(name: str) -> bool:
    """Whether ``name`` is of the pattern of an HTTP tool (``tenants/*/httpTools/*``)."""
    parts = name.split("/")
    return len(parts) == 4 and parts[0] == "tenants" and parts[2] == "httpTools"


def tool_ids(tool_names: Sequence[str], tenant_id: str) -> list[str]:
    """Returns the IDs of the tenant's HTTP tools among ``tool_names``."""
    return [n.split("/")[3] for n in tool_names if is_http_tool(n) and n.split("/")[1] == tenant_id]


async def resolve_tools(
    db: Database, sealer: Sealer, policy: EgressPolicy, tenant_id: str, tool_names: Sequence[str]
) -> list[HttpTool]:
    """Returns the HTTP tools among an agent's tools, ready to offer and call, in the agent's order.

    A tool that is gone or of another tenant is still returned, failing every call
    with the reason, so the run goes on.
    """
    wanted = [name for name in tool_names if is_http_tool(name)]
    if not wanted:
        return []
    rows = await db.read(tenant_id, http_tool_store.get_http_tools, tool_ids(wanted, tenant_id))
    by_id = {row.id: row for row in rows}
    resolved = []
    for name in wanted:
        tenant, tool_id = name.split("/")[1::2]
        row = by_id.get(tool_id) if tenant == tenant_id else None
        if row is None:
            resolved.append(
                _failing(name, function_name_of(tool_id), f"{name} is not an HTTP tool of the tenant")
            )
        else:
            resolved.append(HttpTool.of(row, sealer, policy))
    return resolved
