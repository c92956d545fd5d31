"""Kit pieces with rules of their own: names, page tokens, errors."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from orchestrall.agent.v1 import resources_pb2 as agent_resources
from orchestrall.billing.v1 import billing_service_pb2 as billing_service
from orchestrall.billing.v1 import resources_pb2 as billing_resources
from orchestrall.flag.v1 import flag_service_pb2 as flag_service
from orchestrall.flag.v1 import resources_pb2 as flag_resources
from services.kit import calls, pagination, validation
from services.kit.errors import MAX_MESSAGE, MAX_VALUE, InvalidArgument, NotFound, invalid
from services.kit.names import ResourceName, validate_id
from services.kit.pagination import page_of

AGENT = ResourceName.of(agent_resources.Agent)


def test_resource_names_parse_and_format_by_the_contracts_pattern() -> None:
    assert AGENT.pattern == "tenants/{tenant}/agents/{agent}"
    assert AGENT.parse("tenants/a/agents/b", "name") == ("a", "b")
    assert AGENT.format("a", "b") == "tenants/a/agents/b"
    for bad in ["tenants/a", "tenants//agents/b", "tenant/a/agents/b", "tenants/a/agents/b/runs/c", ""]:
        with pytest.raises(InvalidArgument) as caught:
            AGENT.parse(bad, "name")
        assert caught.value.violations[0].field == "name"


@pytest.mark.parametrize("value", ["a", "acme", "acme-logistics", "a1"])
def test_valid_ids(value: str) -> None:
    assert validate_id(value, "id") == value


@pytest.mark.parametrize("value", ["", "Acme", "1acme", "acme-", "a_b", "x" * 64])
def test_invalid_ids(value: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_id(value, "id")


def test_page_tokens_round_trip_and_are_bound_to_the_request() -> None:
    first = page_of(2, "", "tenants/a")
    assert first.after is None
    token = first.token_after(["2026-12-01T00:00:00+00:00", "b"])
    second = page_of(2, token, "tenants/a")
    assert second.after == ("2026-12-01T00:00:00+00:00", "b")
    with pytest.raises(InvalidArgument):
        page_of(2, token, "tenants/b")
    with pytest.raises(InvalidArgument):
        page_of(2, "garbage!", "tenants/a")
    with pytest.raises(InvalidArgument):
        page_of(-1, "", "tenants/a")
    assert page_of(10_000, "", "x").size == 1000


def _reason(token: str, *request_keys: str) -> str:
    with pytest.raises(InvalidArgument) as caught:
        page_of(10, token, *request_keys)
    return caught.value.violations[0].description


def test_page_tokens_cannot_be_forged_moved_between_lists_or_kept_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = page_of(10, "", "tenants/a").token_after(["2026-12-01T00:00:00+00:00", "b"])
    payload, mac = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["a"] = [float("inf"), "b"]
    reencoded = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    assert _reason(f"{reencoded}.{mac}", "tenants/a") == "is not a page token of this API"
    assert _reason(payload, "tenants/a") == "is not a page token of this API"
    # The same parent in another RPC (ListUsers' token on ListApiKeys) is another request.
    calls.CURRENT_RPC.set("/orchestrall.auth.v1.AuthService/ListApiKeys")
    try:
        assert _reason(token, "tenants/a") == "belongs to a different request"
    finally:
        calls.CURRENT_RPC.set("")
    later = time.time() + pagination.TOKEN_LIFETIME_SECONDS + 1
    monkeypatch.setattr(pagination.time, "time", lambda: later)
    assert _reason(token, "tenants/a") == "has expired; list again from the first page"
    pagination.use_key(b"another deployment's key")
    try:
        monkeypatch.undo()
        assert _reason(token, "tenants/a") == "is not a page token of this API"
    finally:
        pagination.use_key(secrets.token_bytes(32))


def test_status_has_exactly_one_error_info() -> None:
    status = NotFound("AGENT_NOT_FOUND", "tenants/a/agents/b not found").to_status("agent.orchestrall.dev")
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert (info.reason, info.domain) == ("AGENT_NOT_FOUND", "agent.orchestrall.dev")


def test_invalid_argument_lists_field_violations() -> None:
    status = invalid("agent.instructions", "is required").to_status("agent.orchestrall.dev")
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR))
    assert bad.field_violations[0].field == "agent.instructions"


def _violations_of(data: bytes, message_type: Any) -> list[tuple[str, str]]:
    """The field violations the guard would answer a request's bytes with."""
    parsed = validation.lenient(message_type.FromString, message_type.__name__)(data)
    if isinstance(parsed, validation.Unreadable):
        return [(v.field, v.description) for v in parsed.error().violations]
    return [(v.field, v.description) for v in validation.violations(parsed)]


def _flag_request() -> flag_service.CreateFlagRequest:
    request = flag_service.CreateFlagRequest(parent="tenants/a", flag_id="f", flag=flag_resources.Flag())
    request.flag.variants["on"].bool_value = True
    request.flag.default_variant = "on"
    return request


def test_field_rules_from_the_contracts_name_each_field_by_its_path() -> None:
    request = _flag_request()
    assert _violations_of(request.SerializeToString(), flag_service.CreateFlagRequest) == []
    request.parent = "p" * 501
    request.flag.variants["k" * 300].bool_value = True
    assert _violations_of(request.SerializeToString(), flag_service.CreateFlagRequest) == [
        ("parent", "must be at most 500 characters"),
        ('flag.variants["' + "k" * 40 + '…"]', "must be at most 200 characters"),
    ]


def test_nul_characters_are_refused_wherever_they_are() -> None:
    request = _flag_request()
    request.flag.description = "a\x00b"
    request.flag.variants["on"].string_value = "\x00"
    request.flag.targeting.update({"if": [{"x\x00": 1}, "y"]})
    assert _violations_of(request.SerializeToString(), flag_service.CreateFlagRequest) == [
        ('flag.variants["on"]', "must not contain NUL characters (U+0000)"),
        ('flag.targeting["if"][0]["x\\u0000"]', "must not contain NUL characters (U+0000)"),
        ("flag.description", "must not contain NUL characters (U+0000)"),
    ]


def _flag_with(where: str) -> flag_service.CreateFlagRequest:
    request = _flag_request()
    request.flag.variants["off"].number_value = 0.0  # a zero byte that is no NUL character
    if where == "string":
        request.flag.description = "a\x00b"
    elif where == "map key":
        request.flag.variants["of\x00f"].bool_value = False
    elif where == "map value (JSON)":
        request.flag.variants["on"].string_value = "\x00"
    elif where == "JSON key":
        request.flag.targeting.update({"if": [{"x\x00": 1}, "y"]})
    elif where == "JSON list":
        request.flag.targeting.update({"in": ["a", "b\x00"]})
    return request


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ("string", "flag.description"),
        ("map key", 'flag.variants["of\\u0000f"]'),
        ("map value (JSON)", 'flag.variants["on"]'),
        ("JSON key", 'flag.targeting["if"][0]["x\\u0000"]'),
        ("JSON list", 'flag.targeting["in"][1]'),
    ],
)
def test_a_single_nul_character_is_found_wherever_it_is(where: str, path: str) -> None:
    data = _flag_with(where).SerializeToString()
    assert _violations_of(data, flag_service.CreateFlagRequest) == [
        (path, "must not contain NUL characters (U+0000)")
    ]


def test_zero_bytes_of_numbers_are_no_nul_characters() -> None:
    events = billing_service.IngestUsageEventsRequest(
        events=[
            billing_resources.UsageEvent(id=f"e{i}", source="s", meter="m", quantity=256.0, subject="x")
            for i in range(3)
        ]
    )
    assert b"\x00" in events.SerializeToString()
    assert _violations_of(events.SerializeToString(), billing_service.IngestUsageEventsRequest) == []
    events.events[2].subject = "agents/a\x00"
    assert _violations_of(events.SerializeToString(), billing_service.IngestUsageEventsRequest) == [
        ("events[2].subject", "must not contain NUL characters (U+0000)")
    ]
    assert _violations_of(_flag_with("none").SerializeToString(), flag_service.CreateFlagRequest) == []


def test_undecodable_and_too_deep_requests_are_malformed_requests() -> None:
    malformed = [("", "is not a valid CreateFlagRequest: malformed, or nested too deeply")]
    assert _violations_of(b"\xff\xff\xff", flag_service.CreateFlagRequest) == malformed
    deep: dict[str, Any] = {}
    for _ in range(120):
        deep = {"a": deep}
    request = _flag_request()
    request.flag.targeting.update(deep)  # the Python runtime builds it; upb refuses to parse it
    assert _violations_of(request.SerializeToString(), flag_service.CreateFlagRequest) == malformed


def test_errors_never_echo_a_large_input_whole() -> None:
    status = NotFound("AGENT_NOT_FOUND", "no agent " + "x" * 5000, metadata={"name": "y" * 5000}).to_status(
        "a"
    )
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert len(status.message) == MAX_MESSAGE and status.message.endswith("…")
    assert len(info.metadata["name"]) == MAX_VALUE
