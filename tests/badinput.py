"""Bad input for every REST operation, derived from the contracts.

For each external RPC (:func:`tests.attacks.targets`), the request message's
descriptor says which fields are in the path, the query and the body, and of
what type; each case breaks one of them the way a careless or hostile client
would: oversized IDs and strings, forged page tokens, out-of-range numbers and
timestamps, deeply nested JSON, unknown fields, bodies that are not JSON,
oversized URLs and headers. :func:`problems` says what is wrong with an answer:
any 5xx, and any error body that is not one ``google.rpc.Status`` with exactly
one ``ErrorInfo``, or that leaks internals (addresses, class names, transport
wording, tracebacks).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tests.attacks import Target

_VARIABLE = re.compile(r"\{([a-z_.]+)(?:=([^}]+))?\}")
LONG = "x" * 10_000
# Text no error message may carry: peer addresses, Python internals, transport wording.
LEAKS = re.compile(
    r"ipv4:|ipv6:|\d+\.\d+\.\d+\.\d+:\d+|Traceback|<class |Exception\b|Error:|DecodeError|grpc_|"
    r"upstream connect|reset reason|delayed connect|_pb2|sqlalchemy|psycopg|sqlite3|File \"",
)


@dataclass(frozen=True)
class Case:
    """One bad request."""

    operation: str
    variant: str
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    return value


def _forged_tokens() -> Iterator[tuple[str, str]]:
    def b64(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    yield "page token, Infinity offset", b64({"o": "Infinity", "f": "0" * 16})
    yield "page token, offset 2^63", b64({"o": 2**63, "f": "0" * 16})
    yield "page token, forged keyset", b64({"a": [1e308, "x"], "f": "0" * 16}) + ".AAAAAAAAAAAAAAAAAAAAAA"
    yield "page token, garbage", "!!not-base64!!"
    yield "page token, oversized", LONG


def _string_fields(
    message: Descriptor, prefix: str = "", depth: int = 0
) -> Iterator[tuple[str, FieldDescriptor]]:
    """``(json path, field)`` of the scalar fields a JSON body can set, nested messages included."""
    for item in message.fields:
        path = f"{prefix}{item.json_name}"
        if item.message_type is not None:
            if item.message_type.full_name.startswith("orchestrall.") and depth < 2 and not item.is_repeated:
                yield from _string_fields(item.message_type, f"{path}.", depth + 1)
            continue
        yield path, item


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    holder = body
    *parents, leaf = path.split(".")
    for part in parents:
        holder = holder.setdefault(part, {})
    holder[leaf] = value
    return body


def _fill(pattern: str, tenant: str, last: str = "x") -> str:
    parts = pattern.split("/")
    values = [
        tenant if i == 1 and parts[0] == "tenants" else (last if p == "*" else p) for i, p in enumerate(parts)
    ]
    return "/".join(values)


def cases(target: Target, tenant: str) -> Iterator[Case]:
    """Every bad request of one operation, naming resources of ``tenant``."""
    name = f"{target.method.containing_service.name}.{target.method.name}"
    verb = target.http_verb
    path = _VARIABLE.sub(lambda m: _fill(m.group(2) or "*", tenant), target.http_path)
    request = target.method.input_type
    path_fields = {m.group(1).split(".")[0] for m in _VARIABLE.finditer(target.http_path)}
    body_field = target.body
    query_fields = [
        item
        for item in request.fields
        if item.name not in path_fields
        and body_field != "*"
        and item.name != body_field
        and item.message_type is None
    ]

    def case(variant: str, **changes: Any) -> Case:
        return Case(name, variant, verb, changes.pop("path", path), **changes)

    good_body = b"{}" if body_field else None
    # Path: an ID far longer than any the contracts allow.
    if "*" in target.http_path or "{" in target.http_path:
        long_path = _VARIABLE.sub(lambda m: _fill(m.group(2) or "*", tenant, LONG), target.http_path)
        yield case("10,000-character ID in the path", path=long_path, body=good_body)
        yield case("10,000-character tenant in the path", path=path.replace(tenant, LONG, 1), body=good_body)
        yield case("encoded dots in the path", path=path.replace(tenant, "%2e%2e", 1), body=good_body)
    # Query parameters, by type.
    for item in query_fields:
        key = item.json_name
        if item.type == FieldDescriptor.TYPE_STRING:
            yield case(f"10,000-character {key}", query={key: LONG}, body=good_body)
            yield case(f"NUL character in {key}", query={key: "a\x00b"}, body=good_body)
        if item.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            for number in ("-1", "2147483648", "99999999999999999999", "abc"):
                yield case(f"{key}={number}", query={key: number}, body=good_body)
        if item.name == "page_token":
            for variant, token in _forged_tokens():
                yield case(variant, query={key: token}, body=good_body)
    for item in request.fields:  # timestamps and other messages go in the query as JSON strings
        if item.message_type is not None and item.message_type.full_name == "google.protobuf.Timestamp":
            if item.name not in path_fields and body_field != "*" and item.name != body_field:
                for instant in ("9999-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "x"):
                    yield case(f"{item.json_name}={instant}", query={item.json_name: instant}, body=good_body)
    # Bodies.
    if body_field:
        body_type = request if body_field == "*" else request.fields_by_name[body_field].message_type
        yield case("body not JSON", body=b"{not json")
        yield case("body a JSON string", body=b'"text"')
        yield case("body a JSON array", body=b"[1, 2]")
        yield case("body null", body=b"null")
        yield case("body not UTF-8", body=b'{"x": "\xff\xfe"}')
        yield case("unknown field in the body", body=json.dumps({"noSuchField": 1}).encode())
        yield case("60-deep JSON in an unknown field", body=json.dumps({"noSuchField": _deep(60)}).encode())
        for path_in_body, item in _string_fields(body_type):
            if item.message_type is None and item.type == FieldDescriptor.TYPE_STRING:
                value: Any = ["x"] * 5_000 if item.is_repeated else LONG * 10
                yield case(
                    f"oversized {path_in_body}", body=json.dumps(_set({}, path_in_body, value)).encode()
                )
                nul: Any = ["a\x00b"] if item.is_repeated else "a\x00b"
                yield case(
                    f"NUL character in {path_in_body}", body=json.dumps(_set({}, path_in_body, nul)).encode()
                )
            if item.type in (
                FieldDescriptor.TYPE_INT32,
                FieldDescriptor.TYPE_INT64,
                FieldDescriptor.TYPE_DOUBLE,
            ):
                for bad in ("NaN", 1e309, -(2**70)):
                    yield case(f"{path_in_body}={bad}", body=json.dumps(_set({}, path_in_body, bad)).encode())
        for item in body_type.fields:
            if item.message_type is not None and item.message_type.full_name == "google.protobuf.Struct":
                for levels in (40, 60, 120):
                    deep = json.dumps(_set({}, item.json_name, _deep(levels))).encode()
                    yield case(f"{levels}-deep JSON in {item.json_name}", body=deep)
                wide = {f"k{i}": [i] * 200 for i in range(200)}
                yield case(
                    f"wide JSON in {item.json_name}", body=json.dumps(_set({}, item.json_name, wide)).encode()
                )
            if item.message_type is not None and item.message_type.full_name == "google.protobuf.Timestamp":
                for value in ("10000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"):
                    yield case(f"{item.json_name}={value}", body=json.dumps({item.json_name: value}).encode())
    # The request line and headers.
    yield case("60,000-character URL", path=path + "?" + "q=" + "y" * 60_000, body=good_body)
    yield case("100,000-byte header", headers={"x-large": "z" * 100_000}, body=good_body)


#: OpenFeature error codes an OFREP failure body may carry (openfeature.dev/specification/types#error-code).
OFREP_ERROR_CODES = frozenset(
    {"FLAG_NOT_FOUND", "PARSE_ERROR", "TYPE_MISMATCH", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"}
)


def _ofrep_failure(body: Any) -> bool:
    """Tells whether a body is an OFREP failure: ``errorCode`` (an OpenFeature code), ``errorDetails``."""
    return (
        isinstance(body, dict)
        and body.get("errorCode") in OFREP_ERROR_CODES
        and isinstance(body.get("errorDetails", ""), str)
        and set(body) <= {"key", "errorCode", "errorDetails", "metadata"}
    )


def _one_status(status: Any) -> bool:
    """Tells whether a body is one ``google.rpc.Status`` with exactly one ``ErrorInfo``.

    Raises:
        AttributeError: The body is no JSON object.
    """
    infos = [d for d in status.get("details", []) if d.get("@type", "").endswith("google.rpc.ErrorInfo")]
    return len(infos) == 1 and isinstance(status.get("code"), int) and "message" in status


def problems(response_status: int, content_type: str, text: str, *, ofrep: bool = False) -> list[str]:
    """Returns what is wrong with an answer to a bad request; empty when nothing is.

    Args:
        response_status: The HTTP status.
        content_type: The answer's content-type.
        text: The answer's body.
        ofrep: The request was to an OFREP endpoint (``/ofrep/``), whose own failures
            have OFREP's shape (``errorCode``, ``errorDetails``); refusals before
            evaluation (token, permission, limits) are ``google.rpc.Status`` like any other.
    """
    found = []
    if response_status >= 500:
        found.append(f"HTTP {response_status}")
    if response_status >= 400:
        if not content_type.startswith("application/json"):
            found.append(f"content-type {content_type!r}, not JSON")
        else:
            try:
                body = json.loads(text)
                if ofrep and response_status in (400, 404) and _ofrep_failure(body):
                    pass  # OFREP's own failure, in its own shape
                elif not _one_status(body):
                    found.append("not one google.rpc.Status with exactly one ErrorInfo")
            except (ValueError, AttributeError):
                found.append("a body that is not JSON")
    if response_status >= 400:
        leak = LEAKS.search(text)
        if leak:
            found.append(f"leaks {leak.group(0)!r}")
        if len(text) > 20_000:
            found.append(f"a {len(text)}-character error body (echoes input)")
    return found
