"""CallTool over REST through Envoy: ``POST /v1/tools/{tool}:call`` with JSON arguments."""

from __future__ import annotations

import httpx
import pytest

from services.agent.tools import invoice_total
from tests.mesh.conftest import auth, grpc_headers
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh


def test_a_tool_is_called_over_rest(http: httpx.Client) -> None:
    tenant = sign_up(http, "tools")
    arguments = {"lines": [{"quantity": 3, "unit_price": 2.5}], "tax_rate_percent": 21}
    answer = http.post(
        "/v1/tools/invoice_total:call",
        json={"parent": f"tenants/{tenant.tenant}", "arguments": arguments},
        headers=auth(tenant.token),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"result": invoice_total(arguments)}
    assert not grpc_headers(answer)


def test_bad_calls_get_the_contracts_errors_over_rest(http: httpx.Client) -> None:
    tenant = sign_up(http, "tools")
    headers = auth(tenant.token)
    parent = f"tenants/{tenant.tenant}"
    bad = http.post(
        "/v1/tools/route_distance:call", json={"parent": parent, "arguments": {"origin": 7}}, headers=headers
    )
    assert bad.status_code == 400, bad.text
    (details,) = [d for d in bad.json()["details"] if d["@type"].endswith("BadRequest")]
    assert {v["field"] for v in details["fieldViolations"]} == {"arguments.origin", "arguments.destination"}
    missing = http.post("/v1/tools/teleport:call", json={"parent": parent}, headers=headers)
    assert missing.status_code == 404, missing.text
    (info,) = [d for d in missing.json()["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["reason"] == "TOOL_NOT_FOUND"
    other = sign_up(http, "tools")
    foreign = http.post(
        "/v1/tools/route_distance:call",
        json={"parent": f"tenants/{other.tenant}", "arguments": {"origin": "Paris", "destination": "Lyon"}},
        headers=headers,
    )
    assert foreign.status_code == 403, foreign.text
    anonymous = http.post("/v1/tools/route_distance:call", json={"parent": parent})
    assert anonymous.status_code == 401
