"""Agent templates over REST through Envoy, and every template run end to end on the real model server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from services.agent.catalog.templates import templates
from services.agent.tools import CATALOG
from tests.mesh.conftest import auth, run_to_end
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh


def test_templates_are_listed_got_and_instantiated_over_rest(http: httpx.Client) -> None:
    tenant = sign_up(http, "templates")
    headers = auth(tenant.token)
    listed = http.get("/v1/agentTemplates", params={"industry": "healthcare", "pageSize": 4}, headers=headers)
    assert listed.status_code == 200, listed.text
    first = listed.json()
    assert [t["industry"] for t in first["agentTemplates"]] == ["healthcare"] * 3 + ["finance"]
    rest = http.get(
        "/v1/agentTemplates",
        params={"industry": "healthcare", "pageSize": 100, "pageToken": first["nextPageToken"]},
        headers=headers,
    ).json()
    assert len(first["agentTemplates"]) + len(rest["agentTemplates"]) == 18 and "nextPageToken" not in rest
    got = http.get("/v1/agentTemplates/retail-price-analyzer", headers=headers)
    assert got.status_code == 200, got.text
    assert got.json()["tools"] == ["tools/price_elasticity"] and got.json()["exampleInput"]
    assert http.get("/v1/agentTemplates/retail-price-analyzer").status_code == 401
    missing = http.get("/v1/agentTemplates/astrology", headers=headers)
    assert missing.status_code == 404, missing.text
    created = http.post(
        f"/v1/tenants/{tenant.tenant}/agents",
        params={"agentId": "pricing"},
        json={"template": "agentTemplates/retail-price-analyzer"},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    agent = created.json()
    assert agent["template"] == "agentTemplates/retail-price-analyzer"
    assert agent["instructions"] == got.json()["instructions"] and agent["tools"] == [
        "tools/price_elasticity"
    ]


def _numbers(value: Any) -> list[str]:
    """The numbers in a tool result as a reply would write them (whole numbers without a fraction)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return (
            [str(int(value))] if float(value).is_integer() else [str(value), f"{value:.1f}", f"{value:.2f}"]
        )
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return []


@pytest.mark.parametrize("template", templates(), ids=lambda t: t.id)
def test_every_template_runs_with_its_tool_on_the_real_model(http: httpx.Client, template: Any) -> None:
    tenant = sign_up(http, "run")
    headers = auth(tenant.token)
    created = http.post(
        f"/v1/tenants/{tenant.tenant}/agents",
        json={"template": template.name, "temperature": 0},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    run = run_to_end(http, created.json()["name"], {"input": template.example_input}, headers)
    assert run["state"] == "STATE_SUCCEEDED", run.get("error")
    call = run["toolCalls"][0]
    assert call["tool"] == template.tools[0] and not call.get("failed"), call
    result = json.loads(call["result"])
    assert result == CATALOG[template.tools[0]].function(json.loads(call["arguments"]))
    cited = [n for n in _numbers(result) if n in run["output"]]
    print(f"\n{template.id}\n  arguments: {call['arguments']}\n  result: {call['result'][:300]}")
    print(f"  reply: {run['output']}\n  cited: {cited}")
