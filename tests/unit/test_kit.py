"""Kit pieces with rules of their own: names, page tokens, errors."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from orchestrall.agent.v1 import resources_pb2 as agent_resources
from services.kit.errors import InvalidArgument, NotFound, invalid
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
