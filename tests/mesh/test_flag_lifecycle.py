"""A flag's life over REST through Envoy: revisions, rollback, flagd files in and out."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh

TIER = {
    "state": "STATE_ENABLED",
    "variants": {"basic": "gpt-small", "premium": "gpt-large"},
    "defaultVariant": "basic",
}


def test_revisions_and_rollback_over_rest(http: httpx.Client) -> None:
    tenant = sign_up(http, "revs")
    headers = auth(tenant.token)
    flags = f"/v1/tenants/{tenant.tenant}/flags"
    created = http.post(flags, params={"flagId": "tier"}, json=TIER, headers=headers)
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    first = created.json()["revisionId"]
    changed = http.patch(
        f"/v1/{name}",
        params={"updateMask": "defaultVariant"},
        json={"defaultVariant": "premium"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text

    listed = http.get(f"/v1/{name}/revisions", headers=headers)
    assert listed.status_code == 200, listed.text
    history = listed.json()["flagRevisions"]
    assert [r["action"] for r in history] == ["ACTION_UPDATE", "ACTION_CREATE"]
    assert history[0]["diff"] == [{"op": "replace", "path": "/defaultVariant", "value": "premium"}]
    assert history[0]["principal"].startswith(f"tenants/{tenant.tenant}/apiKeys/")
    one = http.get(f"/v1/{history[1]['name']}", headers=headers)
    assert one.status_code == 200 and one.json() == history[1]

    rolled = http.post(f"/v1/{name}:rollback", json={"revisionId": first}, headers=headers)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["defaultVariant"] == "basic"
    evaluated = http.post(f"/v1/{name}:evaluate", json={}, headers=headers)
    assert evaluated.json()["variant"] == "basic"

    missing = http.post(f"/v1/{name}:rollback", json={"revisionId": "ffffffff"}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["details"][0]["reason"] == "FLAG_REVISION_NOT_FOUND"
    other = sign_up(http, "revs-other")
    foreign = http.get(f"/v1/{name}/revisions", headers=auth(other.token))
    assert foreign.status_code == 403


def test_a_flagd_file_moves_in_and_out_over_rest(http: httpx.Client) -> None:
    tenant = sign_up(http, "docs")
    headers = auth(tenant.token)
    document = {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "$evaluators": {"beta": {"starts_with": [{"var": "email"}, "beta-"]}},
        "flags": {
            "newBanner": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "beta"}, "on", "off"]},
            }
        },
    }
    raw = json.dumps(document).encode()
    imported = http.post(
        f"/v1/tenants/{tenant.tenant}/flags:import",
        params={"requestId": str(uuid.uuid4())},
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["createdFlags"] == [f"tenants/{tenant.tenant}/flags/newBanner"]
    evaluated = http.post(
        f"/v1/tenants/{tenant.tenant}/flags/newBanner:evaluate",
        json={"context": {"email": "beta-ann@example.com"}},
        headers=headers,
    )
    assert (evaluated.json()["variant"], evaluated.json()["reason"]) == ("on", "TARGETING_MATCH")

    exported = http.get(f"/v1/tenants/{tenant.tenant}/flags:export", headers=headers)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/json")
    assert exported.json()["flags"]["newBanner"]["targeting"] == {
        "if": [{"starts_with": [{"var": "email"}, "beta-"]}, "on", "off"]
    }

    broken = http.post(
        f"/v1/tenants/{tenant.tenant}/flags:import",
        content=b'{"flags": {"x": {"state": "ENABLED", "variants": {}}}}',
        headers={**headers, "content-type": "application/json"},
    )
    assert broken.status_code == 400, broken.text
    details = broken.json()["details"]
    assert any(d.get("reason") == "INVALID_FLAG_DEFINITION" for d in details)
    violations = [v for d in details for v in d.get("fieldViolations", [])]
    assert violations and all(v["field"] == "body" for v in violations)
    assert violations[0]["description"].startswith("/flags/x")


def test_usage_and_stale_flags_over_rest(http: httpx.Client) -> None:
    tenant = sign_up(http, "usage")
    headers = auth(tenant.token)
    flags = f"/v1/tenants/{tenant.tenant}/flags"
    assert http.post(flags, params={"flagId": "tier"}, json=TIER, headers=headers).status_code == 200
    for _ in range(3):
        assert http.post(f"{flags}/tier:evaluate", json={}, headers=headers).status_code == 200
    ofrep = http.post("/ofrep/v1/evaluate/flags/tier", json={"context": {}}, headers=headers)
    assert ofrep.status_code == 200, ofrep.text
    usage = http.get(f"{flags}/tier/usage", headers=headers)
    assert usage.status_code == 200, usage.text
    assert usage.json()["totals"] == [
        {"startTime": usage.json()["startTime"], "variant": "basic", "reason": "STATIC", "count": "4"}
    ]
    assert "lastEvaluateTime" in usage.json()
    report = http.get(f"{flags}:reportStale", params={"days": 7}, headers=headers)
    assert report.status_code == 200, report.text
    assert [(s["flag"], s["reason"], s["variant"]) for s in report.json()["staleFlags"]] == [
        (f"tenants/{tenant.tenant}/flags/tier", "REASON_ONE_VARIANT", "basic")
    ]
