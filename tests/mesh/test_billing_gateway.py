"""Usage events as CloudEvents over HTTP through Envoy: the HTTP binding's structured and batched modes.

An operator (a tenant's owner token) posts events to
``/v1/tenants/{t}/usageEvents:ingest`` exactly as a CloudEvents HTTP sender would
(CloudEvents HTTP protocol binding 1.0.2, sections 3.2 and 3.3); what was recorded is
read back through the REST usage summary.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.mesh.conftest import auth, grpc_headers
from tests.mesh.test_access_gateway import SignedUp, sign_up

pytestmark = pytest.mark.mesh

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def cloud_event(event_id: str, meter: str = "agent_runs", quantity: float = 1, **attributes: Any) -> dict:
    """A CloudEvent in the JSON event format of one of billing's built-in meters."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "//erp.example.com/usage",
        "type": f"dev.orchestrall.usage.{meter}",
        "subject": "customers/42",
        "time": "2026-12-01T10:00:00+01:00",
        "datacontenttype": "application/json",
        "data": {"quantity": quantity},
        **attributes,
    }


def post(http: httpx.Client, owner: SignedUp, body: Any, content_type: str) -> httpx.Response:
    return http.post(
        f"/v1/tenants/{owner.tenant}/usageEvents:ingest",
        content=json.dumps(body).encode(),
        headers={**auth(owner.token), "content-type": content_type},
    )


def used(http: httpx.Client, owner: SignedUp, time: str = "2026-12-01T09:00:00Z") -> dict[str, Any]:
    summary = http.get(
        f"/v1/tenants/{owner.tenant}/usageSummary", params={"periodTime": time}, headers=auth(owner.token)
    )
    assert summary.status_code == 200, summary.text
    return {m["meter"]: (m.get("quantity", 0), int(m.get("eventCount", 0))) for m in summary.json()["meters"]}


def violations(response: httpx.Response) -> tuple[str, list[str]]:
    """Returns the ErrorInfo's reason and the BadRequest's fields of a REST error."""
    details = response.json()["details"]
    (reason,) = [d["reason"] for d in details if d["@type"].endswith("google.rpc.ErrorInfo")]
    fields = [v["field"] for d in details if d["@type"].endswith("BadRequest") for v in d["fieldViolations"]]
    return reason, fields


def test_structured_mode_records_one_event_once(http: httpx.Client) -> None:
    owner = sign_up(http, "ce-one")
    first = post(http, owner, cloud_event("e1", quantity=3), STRUCTURED)
    assert first.status_code == 200, first.text
    assert first.json() == {"acceptedCount": 1}
    again = post(http, owner, cloud_event("e1", quantity=3), f"{STRUCTURED}; charset=utf-8")
    assert again.status_code == 200 and again.json() == {"duplicateCount": 1}
    assert grpc_headers(again) == []
    assert used(http, owner)["agent_runs"] == (3, 1)


def test_batched_mode_records_every_event_or_none(http: httpx.Client) -> None:
    owner = sign_up(http, "ce-batch")
    batch = [
        cloud_event("b1", quantity=2),
        cloud_event("b2", "model_input_tokens", 120),
        cloud_event("b3", "model_output_tokens", 30),
        {**cloud_event("b4"), "type": "com.example.api.call", "data": {"path": "/x"}, "region": "eu1"},
    ]
    recorded = post(http, owner, batch, BATCH)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json() == {"acceptedCount": 4}
    usage = used(http, owner)
    assert (usage["agent_runs"], usage["model_input_tokens"], usage["model_output_tokens"]) == (
        (2, 1),
        (120, 1),
        (30, 1),
    )

    bad = [
        cloud_event("c0", quantity=5),
        cloud_event("c1", time="yesterday"),
        {k: v for k, v in cloud_event("c2").items() if k != "id"},
        cloud_event("c3", data={"quantity": -1}),
        cloud_event("c4", specversion="0.3", data_base64="AAAA"),
    ]
    refused = post(http, owner, bad, BATCH)
    assert refused.status_code == 400, refused.text
    assert violations(refused) == (
        "INVALID_USAGE_EVENTS",
        [
            "events[1].time",
            "events[2].id",
            "events[3].data.quantity",
            "events[4].specversion",
            "events[4].data_base64",
        ],
    )
    assert used(http, owner)["agent_runs"] == (2, 1), "c0 of the refused batch must not be recorded"
    assert post(http, owner, [cloud_event("c0", quantity=5)], BATCH).json() == {"acceptedCount": 1}


def test_other_bodies_are_refused_with_the_field_named(http: httpx.Client) -> None:
    owner = sign_up(http, "ce-bad")
    plain = post(http, owner, cloud_event("p1"), "application/json")
    assert plain.status_code == 400
    assert violations(plain) == ("UNSUPPORTED_CONTENT_TYPE", ["body.content_type"])
    not_json = http.post(
        f"/v1/tenants/{owner.tenant}/usageEvents:ingest",
        content=b'{"id": NaN}',
        headers={**auth(owner.token), "content-type": STRUCTURED},
    )
    assert not_json.status_code == 400 and violations(not_json) == ("INVALID_USAGE_EVENTS", ["body"])
    assert violations(post(http, owner, cloud_event("p2"), BATCH)) == ("INVALID_USAGE_EVENTS", ["body"])
    assert violations(post(http, owner, [], BATCH)) == ("INVALID_USAGE_EVENTS", ["events"])
    too_many = [cloud_event(f"m{i}", "model_input_tokens") for i in range(1001)]
    assert violations(post(http, owner, too_many, BATCH)) == ("INVALID_USAGE_EVENTS", ["events"])
    assert used(http, owner)["agent_runs"] == (0, 0)


def test_a_viewer_may_not_ingest_and_nobody_ingests_for_another_tenant(http: httpx.Client) -> None:
    owner, other = sign_up(http, "ce-own"), sign_up(http, "ce-other")
    made = http.post(
        f"/v1/tenants/{owner.tenant}/apiKeys", json={"roles": ["viewer"]}, headers=auth(owner.token)
    )
    grant = {"grant_type": "client_credentials", "client_secret": made.json()["apiKeySecret"]}
    viewer = SignedUp(owner.tenant, http.post("/v1/oauth2/token", json=grant).json()["access_token"])
    refused = post(http, viewer, cloud_event("v1"), STRUCTURED)
    assert refused.status_code == 403 and violations(refused)[0] == "MISSING_PERMISSION"
    foreign = post(http, SignedUp(owner.tenant, other.token), cloud_event("v2"), STRUCTURED)
    assert foreign.status_code == 403 and violations(foreign)[0] == "TENANT_MISMATCH"
    assert used(http, owner)["agent_runs"] == (0, 0)
