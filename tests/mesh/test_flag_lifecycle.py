"""A flag's life over REST through Envoy: revisions, rollback."""

from __future__ import annotations

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
