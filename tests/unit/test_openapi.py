"""gen/openapi.json: valid OpenAPI 3.0, one operation per REST binding, the contracts' rules in it.

That the file is current is checked with the rest of gen/ (tests/unit/test_contracts.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_spec_validator import validate

from gateway.envoy.render import _OURS, rpcs_of, service_descriptors
from gateway.openapi import DOCUMENT, HTTP_STATUS, reasons_in
from services.auth.oauth import PARAMETERS
from services.kit.config import SERVICES
from services.kit.protogen import ROOT


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
    status = {"$ref": "#/components/schemas/google.rpc.Status"}
    for operation_id, (_, _, operation) in operations.items():
        default = operation["responses"]["default"]["content"]["application/json"]["schema"]
        if operation_id == "AuthService_IssueToken":  # form requests get RFC 6749 errors
            assert default == {
                "anyOf": [status, {"$ref": "#/components/schemas/orchestrall.auth.v1.OAuthError"}]
            }
        else:
            assert default == status
    assert document["security"] == [{"bearerAuth": []}]
    assert operations["AuthService_IssueToken"][2]["security"] == []
    assert "security" not in operations["AgentService_GetAgent"][2]
    assert "Errors:" in operations["AgentService_GetAgent"][2]["description"]


def test_server_streams_are_server_sent_events(document: dict[str, Any]) -> None:
    _, _, stream = _operations(document)["AgentService_StreamRunEvents"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]


def test_the_token_endpoint_also_takes_the_form_oauth_clients_send(document: dict[str, Any]) -> None:
    verb, path, token = _operations(document)["AuthService_IssueToken"]
    assert (verb, path) == ("POST", "/v1/oauth2/token")
    content = token["requestBody"]["content"]
    assert list(content) == ["application/json", "application/x-www-form-urlencoded"]
    form = content["application/x-www-form-urlencoded"]["schema"]
    # RFC 6749's parameter names: the proto field names (services.auth.oauth.PARAMETERS).
    assert set(form["properties"]) == set(PARAMETERS)
    assert form["required"] == ["grant_type"]
    assert form["properties"]["client_secret"]["maxLength"] == 500
    oauth_error = document["components"]["schemas"]["orchestrall.auth.v1.OAuthError"]
    assert oauth_error["required"] == ["error"]


def test_error_reasons_come_from_each_rpcs_comment(document: dict[str, Any]) -> None:
    operations = _operations(document)
    get_agent = operations["AgentService_GetAgent"][2]["x-error-reasons"]
    assert get_agent[0] == {"code": "NOT_FOUND", "status": 404, "reason": "AGENT_NOT_FOUND"}
    common = {(e["code"], e["reason"]) for e in get_agent if e.get("common")}
    assert ("PERMISSION_DENIED", "TENANT_MISMATCH") in common
    assert ("INVALID_ARGUMENT", "MALFORMED_REQUEST") in common
    # An anonymous RPC has no token to check: only the reasons of every RPC are common.
    sign_up = operations["AuthService_CreateTenant"][2]["x-error-reasons"]
    assert "MALFORMED_REQUEST" in {e["reason"] for e in sign_up}
    assert not {"MISSING_PERMISSION", "INVALID_TOKEN"} & {e["reason"] for e in sign_up}
    # Words in parentheses explain; they are no reasons (CreateAgent's `TOOL_CHOICE_REQUIRED`).
    create_agent = {e["reason"] for e in operations["AgentService_CreateAgent"][2]["x-error-reasons"]}
    assert "TOOL_CHOICE_REQUIRED" not in create_agent
    # OFREP names HTTP statuses, not gRPC codes.
    ofrep = operations["OfrepService_EvaluateOfrepFlag"][2]["x-error-reasons"]
    assert {"status": 404, "reason": "FLAG_NOT_FOUND"} in ofrep
    for operation_id, (_, _, operation) in operations.items():
        reasons = operation["x-error-reasons"]
        assert reasons, operation_id
        for entry in reasons:
            assert entry["status"] == HTTP_STATUS.get(entry.get("code", ""), entry["status"]), entry


def test_every_documented_reason_is_one_the_code_answers_with(document: dict[str, Any]) -> None:
    source = "\n".join(
        p.read_text() for folder in ("services", "gateway") for p in (ROOT / folder).rglob("*.py")
    )
    documented = {
        entry["reason"]
        for item in document["paths"].values()
        for operation in item.values()
        for entry in operation["x-error-reasons"]
    }
    assert len(documented) > 50
    # A string literal, or a member of an enum the code answers with (OpenFeature's ErrorCode).
    missing = sorted(r for r in documented if f'"{r}"' not in source and f".{r}" not in source)
    assert missing == []


def test_reasons_in_a_list_of_errors() -> None:
    text = (
        "INVALID_ARGUMENT `INVALID_ARGUMENT` (`x` not in `STATE_A`) or `INVALID_FLAG` (as `B`); "
        "NOT_FOUND `FLAG_NOT_FOUND`; 400 `PARSE_ERROR`, over 1,500 windows"
    )
    assert reasons_in(text) == [
        ("INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        ("INVALID_ARGUMENT", "INVALID_FLAG"),
        ("NOT_FOUND", "FLAG_NOT_FOUND"),
        (400, "PARSE_ERROR"),
    ]


def test_path_parameters_are_named_by_the_resource_patterns(document: dict[str, Any]) -> None:
    verb, path, _ = _operations(document)["AgentService_GetKnowledgeBase"]
    # tenants/{tenant}/knowledgeBases/{knowledge_base}, not an English singular ("knowledgeBas").
    assert (verb, path) == ("GET", "/v1/tenants/{tenant}/knowledgeBases/{knowledgeBase}")
