"""OpenAPI 3.0 description of the gateway's REST API, derived from the contracts.

No well-kept generator installs offline (gnostic's ``protoc-gen-openapi`` and
grpc-gateway's ``protoc-gen-openapiv2`` are Go programs; buf's remote plugins need
the network), so this module is a small generator over the same descriptors and
``google.api.http`` rules Envoy's transcoder uses (:func:`gateway.envoy.render.rpcs_of`).
It writes ``gen/openapi.json`` (``make proto``); a test checks that it is current and
valid (``openapi-spec-validator``), and the gateway serves it at ``/openapi.json``.

Mapping rules:

* **Operations.** One per REST binding of every external RPC of our own packages
  (adopted protocols such as flagd's have no REST binding and are left out; OFREP's
  routes are its own specification's). ``operationId`` is ``Service_Method`` (with
  ``_2``, ``_3`` for additional bindings), the tag is the gRPC service, the summary
  the first sentence of the RPC's proto comment and the description the whole of it,
  with the error reasons it names.
* **Error reasons.** ``x-error-reasons`` lists what the RPC's comment names after
  ``Errors:``: each backquoted ``UPPER_SNAKE`` reason outside parentheses, under the gRPC
  code (or HTTP status) before it, with the HTTP status the gateway answers that code
  with (``google/rpc/code.proto``), up to "the common reasons of `Service`"; those are
  the bullets of the service's comment (``- Every RPC:``, ``- RPCs with a permission:``
  unless the RPC is anonymous, ``- List RPCs:`` for ``List*``), appended with
  ``"common": true``. Nothing is written by hand: a reason is in the document because a
  comment names it.
* **Paths.** A variable ``{name=tenants/*/agents/*}`` becomes one path parameter per
  ``*``, named after the collection before it (``/tenants/{tenant}/agents/{agent}``),
  as AIP-122 resource patterns name them; ``**`` becomes ``{path}`` (any segments).
  A custom method's ``:verb`` stays literal. The parameter's name is the variable of the
  ``google.api.resource`` pattern with that collection (``knowledgeBases/{knowledge_base}``:
  ``{knowledgeBase}``), else the collection's English singular.
* **Request.** ``body: "*"`` is the request message less its path fields; ``body:
  "field"`` is that field's schema and the other fields are query parameters; without a
  body every field not in the path is a query parameter, as HTTP transcoding
  (``google/api/http.proto``) maps them. Query parameters are the scalar, enum and
  repeated-scalar fields and the well-known types written as strings; message fields
  are left out (the transcoder accepts ``a.b=`` too). A ``google.api.HttpBody`` body
  is any media type, sent as is. The token RPC (:data:`~gateway.envoy.render.TOKEN_RPC`)
  also takes its fields, by proto name, as ``application/x-www-form-urlencoded`` (the
  gateway routes those to :mod:`services.auth.oauth`), whose errors are RFC 6749
  section 5.2's ``{error, error_description}``.
* **Schemas** follow the proto3 JSON mapping (protobuf.dev "ProtoJSON format"):
  ``json_name`` keys, 64-bit integers as strings (``format: int64``), enums by name,
  ``bytes`` base64, ``map`` as ``additionalProperties``, ``Timestamp`` as RFC 3339
  ``date-time``, ``Duration`` as ``"1.5s"``, ``FieldMask`` as a comma-separated string,
  ``Struct``/``Value`` as any JSON. Field behaviours (AIP-203): ``REQUIRED`` is
  ``required``, ``OUTPUT_ONLY`` is ``readOnly``, ``INPUT_ONLY`` is ``writeOnly``.
  protovalidate bounds that JSON Schema can say exactly are kept: string
  ``min_len``/``max_len`` (``minLength``/``maxLength``; both count characters),
  numeric ``gte``/``lte``/``gt``/``lt`` and repeated ``min_items``/``max_items``.
* **Responses.** ``200`` is the response message (a server stream is
  ``text/event-stream``, each event one message, as the gateway sends it); every
  other status is a ``google.rpc.Status`` with its ``details`` (``ErrorInfo``,
  ``BadRequest``), which is what the gateway answers errors with.
* **Security.** A bearer JWT (RFC 6750) on every operation except the anonymous RPCs
  (``(orchestrall.api.v1.access).anonymous``).

Usage::

    python -m gateway.openapi            # writes gen/openapi.json
    python -m gateway.openapi --out -    # prints it
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from buf.validate import validate_pb2
from google.api import field_behavior_pb2, resource_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
)

from gateway.envoy.render import (
    _OURS,
    FORM_CONTENT_TYPE,
    TOKEN_RPC,
    HttpBinding,
    rpcs_of,
    service_descriptors,
)
from services.kit.config import SERVICES
from services.kit.protogen import GEN_DIR, OPENAPI_FILE, source_image

DOCUMENT = GEN_DIR / OPENAPI_FILE
#: 3.0, not 3.1: the Swagger UI that installs from a package (``swagger-ui-bundle``, UI 4.15)
#: renders 3.0 only, and 3.0 is what most client generators read.
OPENAPI_VERSION = "3.0.3"
_STATUS = "google.rpc.Status"
_HTTP_BODY = "google.api.HttpBody"
_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")
#: The HTTP status the gateway answers each gRPC code with (``google/rpc/code.proto``'s
#: mapping, which Envoy's transcoder applies).
HTTP_STATUS: dict[str, int] = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNAVAILABLE": 503,
}
#: In an ``Errors:`` list: a gRPC code, an HTTP status before a reason, or a backquoted reason.
_ERROR_TOKEN = re.compile(
    r"(?P<code>\b(?:" + "|".join(HTTP_STATUS) + r")\b|\b[1-5][0-9]{2}(?=\s+`))|`(?P<reason>[A-Z][A-Z0-9_]*)`"
)
#: Where an RPC's own reasons end and its service's common ones are referred to.
_COMMON = re.compile(r"common\s+reasons\s+of\s+`(\w+)`")
#: A bullet of a service comment's common reasons, ``- RPCs with a permission: ...``.
_BULLET = re.compile(r"^- ([^:\n]+):(.*?)(?=^- |^$|\Z)", re.M | re.S)
#: RFC 6749 section 5.2's error response, which the form-encoded token requests get.
_OAUTH_ERROR = "orchestrall.auth.v1.OAuthError"
_OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "An OAuth 2.0 error (RFC 6749 section 5.2), the answer to a form-encoded token request: "
        "HTTP 400, 401 with `WWW-Authenticate: Basic` for `invalid_client`, 503 or 500."
    ),
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "description": "A code of RFC 6749 section 5.2 (`invalid_client`), or `server_error` or "
            "`temporarily_unavailable` (section 11.4's registry).",
        },
        "error_description": {"type": "string"},
    },
}

#: Well-known types and how ProtoJSON writes them.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int64", "minimum": 0},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "int64"},
}
#: Well-known types a query parameter can carry (written as one string or scalar).
_QUERY_WELL_KNOWN = frozenset(_WELL_KNOWN) - {
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Empty",
    "google.protobuf.Any",
}

_T = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_INT64: {"type": "string", "format": "int64"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _T.TYPE_UINT64: {"type": "string", "format": "int64"},
    _T.TYPE_FIXED64: {"type": "string", "format": "int64"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
}


class Comments:
    """Leading comments of services, methods, messages, fields and enum values, by full name.

    Args:
        image: A ``FileDescriptorSet`` with source info (:func:`services.kit.protogen.source_image`).
    """

    def __init__(self, image: descriptor_pb2.FileDescriptorSet) -> None:
        self._by_name: dict[str, str] = {}
        for file in image.file:
            located = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
            prefix = f"{file.package}." if file.package else ""
            for i, service in enumerate(file.service):
                self._note(prefix + service.name, located.get((6, i)))
                for j, method in enumerate(service.method):
                    self._note(f"{prefix}{service.name}.{method.name}", located.get((6, i, 2, j)))
            for i, message in enumerate(file.message_type):
                self._messages(prefix + message.name, message, (4, i), located)
            for i, enum in enumerate(file.enum_type):
                self._enum(prefix + enum.name, enum, (5, i), located)

    def _note(self, name: str, comment: str | None) -> None:
        if comment:
            self._by_name[name] = _clean(comment)

    def _messages(
        self,
        name: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        located: dict[tuple[int, ...], str],
    ) -> None:
        self._note(name, located.get(path))
        for i, field in enumerate(message.field):
            self._note(f"{name}.{field.name}", located.get((*path, 2, i)))
        for i, nested in enumerate(message.nested_type):
            self._messages(f"{name}.{nested.name}", nested, (*path, 3, i), located)
        for i, enum in enumerate(message.enum_type):
            self._enum(f"{name}.{enum.name}", enum, (*path, 4, i), located)

    def _enum(
        self,
        name: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        located: dict[tuple[int, ...], str],
    ) -> None:
        self._note(name, located.get(path))
        for i, value in enumerate(enum.value):
            self._note(f"{name}.{value.name}", located.get((*path, 2, i)))

    def of(self, full_name: str) -> str:
        """Returns the comment of ``full_name`` (``pkg.Message.field``), or an empty string."""
        return self._by_name.get(full_name, "")


def _clean(comment: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in comment.strip("\n").split("\n")]
    return "\n".join(lines).strip()


def _summary(description: str) -> str:
    first = description.split("\n\n", 1)[0].replace("\n", " ")
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    return sentence.rstrip(".")


def _singular(collection: str) -> str:
    if collection.endswith("ies"):
        return collection[:-3] + "y"
    if collection.endswith("ses"):
        return collection[:-2]
    return collection[:-1] if collection.endswith("s") else collection


def _outside_parentheses(text: str) -> str:
    """Returns ``text`` without what its (nested) parentheses hold."""
    depth = 0
    kept: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            kept.append(char)
    return "".join(kept)


def reasons_in(text: str) -> list[tuple[str | int, str]]:
    """Returns the ``(code, reason)`` pairs a list of errors names, in its order.

    A code is a gRPC code name (``NOT_FOUND``) or an HTTP status followed by a reason
    (OFREP's ``404 `FLAG_NOT_FOUND```); each backquoted ``UPPER_SNAKE`` word after it, up
    to the next code, is one of its reasons. What parentheses hold is explanation, not a reason.
    """
    found: list[tuple[str | int, str]] = []
    code: str | int | None = None
    for match in _ERROR_TOKEN.finditer(_outside_parentheses(text)):
        if match["code"]:
            code = int(match["code"]) if match["code"].isdigit() else match["code"]
        elif code is not None:
            found.append((code, match["reason"]))
    return found


def _reason(code: str | int, reason: str, common: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"reason": reason}
    if isinstance(code, int):
        entry["status"] = code
    else:
        entry["code"] = code
        entry["status"] = HTTP_STATUS[code]
    if common:
        entry["common"] = True
    return entry


class ErrorReasons:
    """The error reasons each RPC's proto comment names, with its service's common ones.

    Args:
        comments: The contracts' comments.
    """

    def __init__(self, comments: Comments) -> None:
        self.comments = comments

    def of(self, method: MethodDescriptor, anonymous: bool) -> list[dict[str, Any]]:
        """Returns the ``x-error-reasons`` of ``method``: its own reasons, then the common ones.

        Args:
            method: The RPC.
            anonymous: Whether it needs no token (the common reasons of RPCs with a
                permission do not apply).

        Returns:
            ``{"code", "status", "reason"}`` objects (``code`` absent for an HTTP status,
            ``"common": true`` on the service's), each pair once.

        Raises:
            ValueError: The comment has no ``Errors:`` list, names no reason at all, or its
                service's comment has a group of common reasons this module does not know.
        """
        comment = self.comments.of(method.full_name)
        at = comment.find("Errors:")
        if at < 0:
            raise ValueError(f"{method.full_name}: its comment names no errors (no `Errors:`)")
        part = comment[at + len("Errors:") :].split("\n\n", 1)[0]
        common = _COMMON.search(part)
        own = part[: common.start()] if common else part
        entries = [_reason(code, reason, False) for code, reason in reasons_in(own)]
        if common:
            service = f"{method.containing_service.file.package}.{common.group(1)}"
            entries += self._common(service, anonymous, method.name.startswith("List"))
        if not entries:
            raise ValueError(f"{method.full_name}: its `Errors:` list names no reason")
        unique: dict[tuple[Any, ...], dict[str, Any]] = {}
        for entry in entries:
            unique.setdefault((entry.get("code"), entry["status"], entry["reason"]), entry)
        return list(unique.values())

    def _common(self, service: str, anonymous: bool, listing: bool) -> list[dict[str, Any]]:
        comment = self.comments.of(service)
        entries: list[dict[str, Any]] = []
        for label, text in _BULLET.findall(comment):
            group = label.strip()
            if group == "Every RPC":
                applies = True
            elif group == "RPCs with a permission":
                applies = not anonymous
            elif group == "List RPCs":
                applies = listing
            elif group.startswith("Internal RPCs"):
                applies = False  # no HTTP binding: not in the document
            else:
                raise ValueError(f"{service}: unknown group of common error reasons {group!r}")
            if applies:
                entries += [_reason(code, reason, True) for code, reason in reasons_in(text)]
        if not entries:
            raise ValueError(f"{service}: its comment lists no common error reasons")
        return entries


def collection_variables(files: Iterable[FileDescriptor]) -> dict[str, str]:
    """Returns each collection's variable in the resource patterns of ``files``, lowerCamelCase.

    ``tenants/{tenant}/knowledgeBases/{knowledge_base}`` gives ``tenants: tenant`` and
    ``knowledgeBases: knowledgeBase`` (AIP-122: the variable names one resource of the
    collection before it).

    Raises:
        ValueError: Two patterns give one collection different variables.
    """
    found: dict[str, str] = {}

    def note(pattern: str) -> None:
        segments = pattern.split("/")
        for collection, variable in zip(segments, segments[1:], strict=False):
            if variable.startswith("{") and variable.endswith("}"):
                head, *rest = variable[1:-1].split("_")
                name = head + "".join(word.capitalize() for word in rest)
                if found.setdefault(collection, name) != name:
                    raise ValueError(f"{collection}: variables {found[collection]!r} and {name!r}")

    def walk(message: Descriptor) -> None:
        options = message.GetOptions()
        if options.HasExtension(resource_pb2.resource):
            for pattern in options.Extensions[resource_pb2.resource].pattern:
                note(pattern)
        for nested in message.nested_types:
            walk(nested)

    for file in files:
        for message in file.message_types_by_name.values():
            walk(message)
    return found


class _Builder:
    """Builds the document; schemas are collected as operations reference them."""

    def __init__(self, comments: Comments, variables: dict[str, str]) -> None:
        self.comments = comments
        self.reasons = ErrorReasons(comments)
        self.variables = variables
        self.schemas: dict[str, dict[str, Any]] = {}

    # Schemas

    def ref(self, message: Descriptor) -> dict[str, Any]:
        """Returns the schema of ``message``: inline for a well-known type, else a ``$ref``."""
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder: recursion stops here
            self.schemas[message.full_name] = self._message(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def _message(
        self, message: Descriptor, skip: frozenset[str] = frozenset(), proto_names: bool = False
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in message.fields:
            if field.name in skip:
                continue
            key = field.name if proto_names else field.json_name
            properties[key] = self.field(field)
            if field_behavior_pb2.REQUIRED in _behaviors(field):
                required.append(key)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        description = self.comments.of(message.full_name)
        if description:
            schema["description"] = description
        return schema

    def body_of(self, message: Descriptor, path_fields: frozenset[str]) -> dict[str, Any]:
        """Returns the schema of ``message`` without ``path_fields`` (a ``body: "*"`` request)."""
        if not path_fields:
            return self.ref(message)
        return self._message(message, path_fields)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        """Returns the schema of one field, its proto comment, behaviours and bounds."""
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self._single(value)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self._single(field)}
            rules = _rules(field)
            if rules is not None and rules.HasField("repeated"):
                if rules.repeated.HasField("min_items"):
                    schema["minItems"] = rules.repeated.min_items
                if rules.repeated.HasField("max_items"):
                    schema["maxItems"] = rules.repeated.max_items
        else:
            schema = self._single(field)
            _bounds(field, schema)
        if "$ref" in schema:
            schema = {"allOf": [schema]}  # siblings of $ref are ignored in OpenAPI 3.0 tools
        description = self.comments.of(field.full_name)
        if description:
            schema["description"] = description
        behaviors = _behaviors(field)
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            schema["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            schema["writeOnly"] = True
        return schema

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return _enum(field.enum_type)
        return dict(_SCALARS[field.type])

    # Operations

    def operation(
        self,
        method: MethodDescriptor,
        binding: HttpBinding,
        anonymous: bool,
        operation_id: str,
        form: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """Returns ``(OpenAPI path, operation object)`` of one binding.

        Args:
            method: The RPC.
            binding: One of its REST bindings.
            anonymous: Whether it needs no token.
            operation_id: The ``operationId``.
            form: The binding also takes its fields form-encoded, by proto name, and answers
                those requests' errors as RFC 6749 section 5.2 JSON (the token endpoint).
        """
        path, parameters, path_fields = self._path(method.input_type, binding.template)
        body = binding.body
        request_body: dict[str, Any] | None = None
        if body == "*":
            request_body = self._request_body(self.body_of(method.input_type, path_fields))
            if form:
                fields = self._message(method.input_type, path_fields, proto_names=True)
                request_body["content"][FORM_CONTENT_TYPE] = {"schema": fields}
            query: list[FieldDescriptor] = []
        elif body:
            field = method.input_type.fields_by_name[body]
            if field.message_type is not None and field.message_type.full_name == _HTTP_BODY:
                request_body = {"required": True, "content": {"*/*": {"schema": {}}}}
            else:
                request_body = self._request_body(self.field(field))
            query = [f for f in method.input_type.fields if f.name != body and f.name not in path_fields]
        else:
            query = [f for f in method.input_type.fields if f.name not in path_fields]
        for field in query:
            if _query_capable(field):
                schema = self.field(field)
                parameter: dict[str, Any] = {
                    "name": field.json_name,
                    "in": "query",
                    "required": field_behavior_pb2.REQUIRED in _behaviors(field),
                    "schema": schema,
                }
                if schema.get("description"):
                    parameter["description"] = schema.pop("description")
                parameters.append(parameter)
        description = self.comments.of(method.full_name)
        error = _error_response()
        if form:
            self.schemas[_OAUTH_ERROR] = _OAUTH_ERROR_SCHEMA
            error["content"]["application/json"]["schema"] = {
                "anyOf": [error["content"]["application/json"]["schema"], _schema_ref(_OAUTH_ERROR)]
            }
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [method.containing_service.name],
            "summary": _summary(description),
            "description": description,
            "parameters": parameters,
            "responses": {"200": self._response(method, binding), "default": error},
            "x-error-reasons": self.reasons.of(method, anonymous),
        }
        if request_body is not None:
            operation["requestBody"] = request_body
        if anonymous:
            operation["security"] = []
        return path, operation

    def _request_body(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    def _response(self, method: MethodDescriptor, binding: HttpBinding) -> dict[str, Any]:
        output = method.output_type
        if binding.response_body:
            field = output.fields_by_name[binding.response_body]
            schema = self.field(field)
        elif output.full_name == _HTTP_BODY:
            return {"description": "The body as the service sends it.", "content": {"*/*": {"schema": {}}}}
        else:
            schema = self.ref(output)
        if method.server_streaming:
            return {
                "description": "Server-Sent Events, each `data:` line one message as JSON.",
                "content": {"text/event-stream": {"schema": {"type": "string"}, "x-item-schema": schema}},
            }
        return {"description": "OK", "content": {"application/json": {"schema": schema}}}

    def _path(self, message: Descriptor, template: str) -> tuple[str, list[dict[str, Any]], frozenset[str]]:
        parameters: list[dict[str, Any]] = []
        fields: set[str] = set()

        def expand(match: re.Match[str]) -> str:
            field_path, pattern = match.group(1), match.group(2) or "*"
            field_name = field_path.split(".")[0]
            fields.add(field_name)
            field = message.fields_by_name[field_name]
            segments = pattern.split("/")
            out = []
            for i, segment in enumerate(segments):
                if segment in ("*", "**"):
                    if segment == "**":
                        name = "path"
                    elif i:
                        name = self.variables.get(segments[i - 1]) or _singular(segments[i - 1])
                    else:
                        name = field.json_name
                    parameters.append(
                        {
                            "name": name,
                            "in": "path",
                            "required": True,
                            "description": f"A segment of `{field.json_name}` (`{pattern}`).",
                            "schema": {"type": "string"},
                        }
                    )
                    out.append("{" + name + "}")
                else:
                    out.append(segment)
            return "/".join(out)

        return _VARIABLE.sub(expand, template), parameters, frozenset(fields)


def _behaviors(field: FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _rules(field: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.field):
        return None
    return options.Extensions[validate_pb2.field]


def _bounds(field: FieldDescriptor, schema: dict[str, Any]) -> None:
    """Copies protovalidate's string lengths and numeric bounds into ``schema``."""
    rules = _rules(field)
    if rules is None:
        return
    kind = rules.WhichOneof("type")
    if kind == "string":
        if rules.string.HasField("min_len"):
            schema["minLength"] = rules.string.min_len
        if rules.string.HasField("max_len"):
            schema["maxLength"] = rules.string.max_len
    elif kind in ("int32", "sint32", "sfixed32", "uint32", "fixed32", "double", "float"):
        numeric = getattr(rules, kind)
        for proto_name, schema_name, exclusive in (
            ("gte", "minimum", False),
            ("lte", "maximum", False),
            ("gt", "minimum", True),
            ("lt", "maximum", True),
        ):
            if numeric.HasField(proto_name):
                schema[schema_name] = getattr(numeric, proto_name)
                if exclusive:  # OpenAPI 3.0: a flag beside the bound
                    schema["exclusive" + schema_name.capitalize()] = True


def _enum(enum: EnumDescriptor) -> dict[str, Any]:
    return {"type": "string", "enum": [v.name for v in enum.values]}


def _query_capable(field: FieldDescriptor) -> bool:
    if field.message_type is None:
        return True
    return not field.is_repeated and field.message_type.full_name in _QUERY_WELL_KNOWN


def _schema_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response() -> dict[str, Any]:
    return {
        "description": (
            "An error: the HTTP status mapped from the gRPC code, and a `google.rpc.Status`. The "
            "operation's `x-error-reasons` lists the `ErrorInfo` reasons its service answers with; "
            "the gateway's own (domain `gateway.orchestrall.dev`, such as `RATE_LIMITED`) come on top."
        ),
        "content": {"application/json": {"schema": _schema_ref(_STATUS)}},
    }


def _methods() -> Iterator[tuple[str, MethodDescriptor]]:
    for name, services in service_descriptors(SERVICES).items():
        for service in services:
            if service.file.package not in _OURS:
                continue
            for method in service.methods:
                yield name, method


def document(image: descriptor_pb2.FileDescriptorSet | None = None) -> dict[str, Any]:
    """Returns the OpenAPI document of every external RPC of the mesh.

    Args:
        image: Descriptors with source info, for the comments; default: built from ``proto/``.

    Returns:
        The document as JSON-ready dicts (OpenAPI 3.0).
    """
    files: dict[str, FileDescriptor] = {}

    def add(file: FileDescriptor) -> None:
        if file.package in _OURS and file.name not in files:
            files[file.name] = file
            for dependency in file.dependencies:
                add(dependency)

    for _, method in _methods():
        add(method.containing_service.file)
    builder = _Builder(
        Comments(image if image is not None else source_image()), collection_variables(files.values())
    )
    from google.rpc import error_details_pb2, status_pb2

    builder.ref(status_pb2.Status.DESCRIPTOR)
    for detail in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
        builder.ref(detail.DESCRIPTOR)
    rpcs = {r.grpc_path: r for r in rpcs_of(service_descriptors(SERVICES))}
    paths: dict[str, dict[str, Any]] = {}
    for _, method in _methods():
        rpc = rpcs[f"/{method.containing_service.full_name}/{method.name}"]
        if rpc.internal:
            continue
        for i, binding in enumerate(rpc.bindings):
            operation_id = f"{method.containing_service.name}_{method.name}" + (f"_{i + 1}" if i else "")
            form = rpc.grpc_path == TOKEN_RPC and binding.method == "POST" and binding.body == "*"
            path, operation = builder.operation(method, binding, rpc.anonymous, operation_id, form)
            verb = binding.method.lower()
            if verb in paths.setdefault(path, {}):
                raise ValueError(f"{binding.method} {path} is bound twice")
            paths[path][verb] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Orchestrall API",
            "version": "v1",
            "description": (
                "REST/JSON of Orchestrall's gRPC services, transcoded by the gateway. Generated from "
                "the protobuf contracts (`proto/`) by `gateway.openapi`; errors are `google.rpc.Status`."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A token from `POST /v1/oauth2/token` (RFC 6750).",
                }
            },
            "schemas": dict(sorted(builder.schemas.items())),
        },
    }


def render(image: descriptor_pb2.FileDescriptorSet | None = None) -> str:
    """Returns the document as the text of ``gen/openapi.json`` (sorted keys, two-space indent)."""
    return json.dumps(document(image), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Writes the OpenAPI document of the gateway.")
    parser.add_argument("--out", default=str(DOCUMENT), help='file to write, "-" for stdout')
    args = parser.parse_args(argv)
    text = render()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
