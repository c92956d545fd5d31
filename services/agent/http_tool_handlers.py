"""The HTTP tool RPCs of :class:`~services.agent.service.AgentService` (a mixin), and their calls.

``CreateHttpTool``, ``GetHttpTool``, ``ListHttpTools``, ``UpdateHttpTool`` and
``DeleteHttpTool`` (AIP-131..135); ``CallTool`` of an HTTP tool comes through
:meth:`HttpToolHandlers.call_http_tool`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import errors, http_tool_store, http_tools
from services.agent.http_tools import HTTP_TOOL, METHOD_VALUES, METHODS
from services.agent.models import HTTP_TOOL_FIELDS, HttpToolRow
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database
from services.kit.egress import EgressPolicy
from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.fieldmask import update_paths
from services.kit.names import TENANT, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.sealing import Sealer
from services.kit.timestamps import to_timestamp, utcnow

IGNORED_FIELDS = frozenset({"name", "create_time", "update_time"})


def http_tool_to_proto(tool: HttpToolRow) -> res.HttpTool:
    """Maps an HTTP tool row to its resource: the auth header's name, never its value."""
    message = res.HttpTool(
        name=HTTP_TOOL.format(tool.tenant_id, tool.id),
        display_name=tool.display_name,
        description=tool.description,
        method=METHOD_VALUES[tool.method],
        url_template=tool.url_template,
        auth_header_name=tool.auth_header_name,
        max_response_bytes=tool.max_response_bytes,
        create_time=to_timestamp(tool.create_time),
        update_time=to_timestamp(tool.update_time),
    )
    message.parameters.update(tool.parameters)
    message.timeout.FromMilliseconds(round(tool.timeout_seconds * 1000))
    return message


def _validate(tool: res.HttpTool, tool_id: str, paths: Sequence[str] = HTTP_TOOL_FIELDS) -> None:
    """Checks an HTTP tool against the rules of ``CreateHttpTool`` (the fields in ``paths``).

    Raises:
        InvalidArgument: With a violation per bad field.
    """
    violations: list[FieldViolation] = []
    if tool_id:
        try:
            validate_id(tool_id, "http_tool_id")
        except InvalidArgument as error:
            violations += error.violations
    if "description" in paths and not tool.description.strip():
        violations.append(FieldViolation("http_tool.description", "must not be blank"))
    if "method" in paths and tool.method not in METHODS:
        violations.append(FieldViolation("http_tool.method", "must be GET, POST, PUT, PATCH or DELETE"))
    schema = json_format.MessageToDict(tool.parameters)
    schema_violations = http_tools.parameter_violations(schema, "http_tool.parameters")
    if {"parameters", "url_template"} & set(paths):
        violations += schema_violations
        if not schema_violations:
            properties = schema.get("properties") or {}
            violations += http_tools.template_violations(
                tool.url_template,
                properties if isinstance(properties, dict) else {},
                "http_tool.url_template",
            )
    if {"auth_header_name", "auth_header_value"} & set(paths):
        violations += http_tools.header_violations(
            tool.auth_header_name, tool.auth_header_value, "http_tool.auth_header"
        )
    if violations:
        raise InvalidArgument(violations)


def _timeout_seconds(tool: res.HttpTool) -> float:
    if tool.HasField("timeout") and tool.timeout.ToTimedelta().total_seconds() > 0:
        return tool.timeout.ToTimedelta().total_seconds()
    return http_tools.DEFAULT_TIMEOUT_SECONDS


class HttpToolHandlers:
    """The HTTP tool RPCs; uses the service's ``_db``, ``_sealer`` and ``_egress``."""

    _db: Database
    _sealer: Sealer
    _egress: EgressPolicy

    async def CreateHttpTool(
        self, request: pb.CreateHttpToolRequest, context: grpc.aio.ServicerContext
    ) -> res.HttpTool:
        """Creates an HTTP tool, its auth header sealed; idempotent by ``request_id``."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        _validate(request.http_tool, request.http_tool_id)
        tool_id = request.http_tool_id or new_id()
        name = HTTP_TOOL.format(tenant_id, tool_id)
        message = request.http_tool
        now = utcnow()
        row = HttpToolRow(
            tenant_id=tenant_id,
            id=tool_id,
            display_name=message.display_name,
            description=message.description,
            method=METHODS[message.method],
            url_template=message.url_template,
            parameters=json_format.MessageToDict(message.parameters),
            auth_header_name=message.auth_header_name,
            auth_sealed=http_tools.seal_auth(self._sealer, name, message.auth_header_value),
            timeout_seconds=_timeout_seconds(message),
            max_response_bytes=message.max_response_bytes or http_tools.DEFAULT_MAX_RESPONSE_BYTES,
            request_id=request.request_id or None,
            create_time=now,
            update_time=now,
        )
        note_resource(name)
        created = await self._db.write(tenant_id, http_tool_store.create_http_tool, row)
        if created is None:
            raise errors.http_tool_exists(name)
        return http_tool_to_proto(created)

    async def GetHttpTool(
        self, request: pb.GetHttpToolRequest, context: grpc.aio.ServicerContext
    ) -> res.HttpTool:
        """Returns an HTTP tool without its auth header's value."""
        tenant_id, tool_id = HTTP_TOOL.parse(request.name, "name")
        require_tenant(tenant_id)
        tool = await self._db.read(tenant_id, http_tool_store.get_http_tool, tool_id)
        if tool is None:
            raise errors.http_tool_not_found(request.name)
        return http_tool_to_proto(tool)

    async def ListHttpTools(
        self, request: pb.ListHttpToolsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListHttpToolsResponse:
        """Returns a page of the tenant's HTTP tools, newest first."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, http_tool_store.list_http_tools, page)
        tools, token = listing.messages(http_tool_to_proto)
        return pb.ListHttpToolsResponse(http_tools=tools, next_page_token=token)

    async def UpdateHttpTool(
        self, request: pb.UpdateHttpToolRequest, context: grpc.aio.ServicerContext
    ) -> res.HttpTool:
        """Updates the fields of the mask; the result is checked as a new tool would be."""
        name = request.http_tool.name
        tenant_id, tool_id = HTTP_TOOL.parse(name, "http_tool.name")
        require_tenant(tenant_id)
        paths = update_paths(request.update_mask, HTTP_TOOL_FIELDS, IGNORED_FIELDS)
        current = await self._db.read(tenant_id, http_tool_store.get_http_tool, tool_id)
        if current is None:
            raise errors.http_tool_not_found(name)
        merged = http_tool_to_proto(current)
        for path in paths:
            if path != "auth_header_value":
                merged.ClearField(path)
            if path == "parameters":
                merged.parameters.CopyFrom(request.http_tool.parameters)
            elif path == "timeout":
                if request.http_tool.HasField("timeout"):
                    merged.timeout.CopyFrom(request.http_tool.timeout)
            else:
                setattr(merged, path, getattr(request.http_tool, path))
        _validate(merged, "", paths)
        values: dict[str, Any] = {}
        for path in paths:
            if path == "method":
                values["method"] = METHODS[merged.method]
            elif path == "parameters":
                values["parameters"] = json_format.MessageToDict(merged.parameters)
            elif path == "timeout":
                values["timeout_seconds"] = _timeout_seconds(merged)
            elif path == "max_response_bytes":
                values[path] = merged.max_response_bytes or http_tools.DEFAULT_MAX_RESPONSE_BYTES
            elif path == "auth_header_value":
                values["auth_sealed"] = http_tools.seal_auth(self._sealer, name, merged.auth_header_value)
            else:
                values[path] = getattr(merged, path)
        values["update_time"] = utcnow()
        note_resource(name)
        updated = await self._db.write(tenant_id, http_tool_store.update_http_tool, tool_id, values)
        if updated is None:
            raise errors.http_tool_not_found(name)
        return http_tool_to_proto(updated)

    async def DeleteHttpTool(
        self, request: pb.DeleteHttpToolRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        """Deletes an HTTP tool."""
        tenant_id, tool_id = HTTP_TOOL.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, http_tool_store.delete_http_tool, tool_id):
            raise errors.http_tool_not_found(request.name)
        return empty_pb2.Empty()

    async def http_tool_of(self, tenant_id: str, name: str) -> http_tools.HttpTool:
        """Returns the tenant's HTTP tool ``name``, ready to call (``CallTool``).

        Raises:
            NotFound: ``TOOL_NOT_FOUND``, no such tool of ``tenant_id`` (another tenant's included).
        """
        owner, tool_id = HTTP_TOOL.parse(name, "name")
        row = (
            await self._db.read(tenant_id, http_tool_store.get_http_tool, tool_id)
            if owner == tenant_id
            else None
        )
        if row is None:
            raise errors.tool_not_found(name)
        return http_tools.HttpTool.of(row, self._sealer, self._egress)
