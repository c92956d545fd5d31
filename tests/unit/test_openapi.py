"""gen/openapi.json: valid OpenAPI 3.0, one operation per REST binding, the contracts' rules in it.

That the file is current is checked with the rest of gen/ (tests/unit/test_contracts.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_spec_validator import validate

from gateway.envoy.render import _OURS, rpcs_of, service_descriptors
from gateway.openapi import DOCUMENT
from services.kit.config import SERVICES


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text())


def _operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        operation["operationId"]: (verb.upper(), path, operation)
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    }


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.0.3"


def test_every_rest_binding_of_our_contracts_is_one_operation(document: dict[str, Any]) -> None:
    operations = _operations(document)
    expected = set()
    for rpc in rpcs_of(service_descriptors(SERVICES)):
        service, method = rpc.grpc_path.strip("/").split("/")
        package, short = service.rsplit(".", 1)
        if package in _OURS and not rpc.internal:
            expected |= {f"{short}_{method}" + (f"_{i + 1}" if i else "") for i in range(len(rpc.bindings))}
    assert set(operations) == expected
    # Internal RPCs (no google.api.http) are not described at all.
    assert "AuthService_RotateSigningKey" not in operations
    assert "BillingService_IngestUsageEvents" not in operations


def test_resource_paths_name_each_segment(document: dict[str, Any]) -> None:
    verb, path, operation = _operations(document)["AgentService_GetAgent"]
    assert (verb, path) == ("GET", "/v1/tenants/{tenant}/agents/{agent}")
    assert [(p["name"], p["in"], p["required"]) for p in operation["parameters"]] == [
        ("tenant", "path", True),
        ("agent", "path", True),
    ]
    verb, path, _ = _operations(document)["AgentService_CancelRun"]
    assert (verb, path) == ("POST", "/v1/tenants/{tenant}/agents/{agent}/runs/{run}:cancel")


def test_bodies_and_query_parameters_follow_http_transcoding(document: dict[str, Any]) -> None:
    _, _, create = _operations(document)["AgentService_CreateAgent"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["allOf"] == [{"$ref": "#/components/schemas/orchestrall.agent.v1.Agent"}]
    query = {p["name"]: p for p in create["parameters"] if p["in"] == "query"}
    assert set(query) == {"agentId", "requestId"}
    _, _, sign_up = _operations(document)["AuthService_CreateTenant"]
    tenant_id = next(p for p in sign_up["parameters"] if p["name"] == "tenantId")
    assert tenant_id["required"] is True  # field_behavior REQUIRED
    _, _, listing = _operations(document)["AgentService_ListAgents"]
    assert "requestBody" not in listing
    assert {p["name"] for p in listing["parameters"] if p["in"] == "query"} >= {"pageSize", "pageToken"}


def test_schemas_follow_proto_json_and_field_behaviour(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    agent = schemas["orchestrall.agent.v1.Agent"]["properties"]
    assert agent["createTime"] == {
        "description": "When the agent was created.",
        "format": "date-time",
        "readOnly": True,
        "type": "string",
    }
    assert agent["instructions"]["maxLength"] == 32000
    assert agent["toolChoice"]["enum"][0] == "TOOL_CHOICE_UNSPECIFIED"
    status = schemas["google.rpc.Status"]["properties"]
    assert set(status) == {"code", "message", "details"}


def test_errors_are_status_and_anonymous_rpcs_need_no_token(document: dict[str, Any]) -> None:
    operations = _operations(document)
    for _, _, operation in operations.values():
        default = operation["responses"]["default"]["content"]["application/json"]["schema"]
        assert default == {"$ref": "#/components/schemas/google.rpc.Status"}
    assert document["security"] == [{"bearerAuth": []}]
    assert operations["AuthService_IssueToken"][2]["security"] == []
    assert "security" not in operations["AgentService_GetAgent"][2]
    assert "Errors:" in operations["AgentService_GetAgent"][2]["description"]


def test_server_streams_are_server_sent_events(document: dict[str, Any]) -> None:
    _, _, stream = _operations(document)["AgentService_StreamRunEvents"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
