"""Usage events as CloudEvents over HTTP through Envoy: the HTTP binding's structured and batched modes.

An operator (a tenant's owner token) posts events to
``/v1/tenants/{t}/usageEvents:ingest`` exactly as a CloudEvents HTTP sender would
(CloudEvents HTTP protocol binding 1.0.2, sections 3.2 and 3.3); what was recorded is
read back through the REST usage summary.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.cli.stack import Stack
from tests.mesh.conftest import auth, grpc_headers
from tests.mesh.test_access_gateway import SignedUp, sign_up

pytestmark = pytest.mark.mesh

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@dataclass(frozen=True)
class Tenants:
    """The module's tenants (sign-ups and tokens are few: the gateway limits them per address)."""

    owner: SignedUp
    other: SignedUp
    viewer: SignedUp  # a viewer key of the owner's tenant


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> Tenants:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        owner, other = sign_up(http, "ce"), sign_up(http, "ce-other")
        made = http.post(
            f"/v1/tenants/{owner.tenant}/apiKeys", json={"roles": ["viewer"]}, headers=auth(owner.token)
        )
        grant = {"grant_type": "client_credentials", "client_secret": made.json()["apiKeySecret"]}
        viewer = SignedUp(owner.tenant, http.post("/v1/oauth2/token", json=grant).json()["access_token"])
    return Tenants(owner, other, viewer)


def cloud_event(
    event_id: str, meter: str = "agent_runs", quantity: float = 1, month: int = 12, **attributes: Any
) -> dict:
    """A CloudEvent in the JSON event format of one of billing's built-in meters, in a month of 2026.

    Each test records its events in a month of its own, so that the tenant's usage summary of
    that month is the test's.
    """
    return {
        "specversion": "1.0",
        "id": f"{month}-{event_id}",
        "source": "//erp.example.com/usage",
        "type": f"dev.orchestrall.usage.{meter}",
        "subject": "customers/42",
        "time": f"2026-{month:02d}-01T10:00:00+01:00",
        "datacontenttype": "application/json",
        "data": {"quantity": quantity},
        **attributes,
    }


def rfc3339(instant: dt.datetime) -> str:
    """An instant as proto3 JSON writes a Timestamp: UTC with a ``Z``."""
    return instant.isoformat().replace("+00:00", "Z")


def post(http: httpx.Client, owner: SignedUp, body: Any, content_type: str) -> httpx.Response:
    return http.post(
        f"/v1/tenants/{owner.tenant}/usageEvents:ingest",
        content=json.dumps(body).encode(),
        headers={**auth(owner.token), "content-type": content_type},
    )


def used(http: httpx.Client, owner: SignedUp, month: int) -> dict[str, Any]:
    """The tenant's usage per built-in meter in a month of 2026."""
    summary = http.get(
        f"/v1/tenants/{owner.tenant}/usageSummary",
        params={"periodTime": f"2026-{month:02d}-15T00:00:00Z"},
        headers=auth(owner.token),
    )
    assert summary.status_code == 200, summary.text
    return {m["meter"]: (m.get("quantity", 0), int(m.get("eventCount", 0))) for m in summary.json()["meters"]}


def violations(response: httpx.Response) -> tuple[str, list[str]]:
    """Returns the ErrorInfo's reason and the BadRequest's fields of a REST error."""
    details = response.json()["details"]
    (reason,) = [d["reason"] for d in details if d["@type"].endswith("google.rpc.ErrorInfo")]
    fields = [v["field"] for d in details if d["@type"].endswith("BadRequest") for v in d["fieldViolations"]]
    return reason, fields


def test_structured_mode_records_one_event_once(http: httpx.Client, tenants: Tenants) -> None:
    owner = tenants.owner
    first = post(http, owner, cloud_event("e1", quantity=3, month=8), STRUCTURED)
    assert first.status_code == 200, first.text
    assert first.json() == {"acceptedCount": 1}
    again = post(http, owner, cloud_event("e1", quantity=3, month=8), f"{STRUCTURED}; charset=utf-8")
    assert again.status_code == 200 and again.json() == {"duplicateCount": 1}
    assert grpc_headers(again) == []
    assert used(http, owner, 8)["agent_runs"] == (3, 1)


def test_batched_mode_records_every_event_or_none(http: httpx.Client, tenants: Tenants) -> None:
    owner = tenants.owner
    batch = [
        cloud_event("b1", month=9, quantity=2),
        cloud_event("b2", "model_input_tokens", 120, month=9),
        cloud_event("b3", "model_output_tokens", 30, month=9),
        {
            **cloud_event("b4", month=9),
            "type": "com.example.api.call",
            "data": {"path": "/x"},
            "region": "eu1",
        },
    ]
    recorded = post(http, owner, batch, BATCH)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json() == {"acceptedCount": 4}
    usage = used(http, owner, 9)
    assert (usage["agent_runs"], usage["model_input_tokens"], usage["model_output_tokens"]) == (
        (2, 1),
        (120, 1),
        (30, 1),
    )

    bad = [
        cloud_event("c0", month=9, quantity=5),
        cloud_event("c1", month=9, time="yesterday"),
        {k: v for k, v in cloud_event("c2", month=9).items() if k != "id"},
        cloud_event("c3", month=9, data={"quantity": -1}),
        cloud_event("c4", month=9, specversion="0.3", data_base64="AAAA"),
        # The services' own sources: a settlement's event sent first would hide it as a duplicate.
        cloud_event("c5", month=9, source="//billing.orchestrall.dev/reservations"),
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
            "events[5].source",
        ],
    )
    assert used(http, owner, 9)["agent_runs"] == (2, 1), "c0 of the refused batch must not be recorded"
    assert post(http, owner, [cloud_event("c0", month=9, quantity=5)], BATCH).json() == {"acceptedCount": 1}


def test_other_bodies_are_refused_with_the_field_named(http: httpx.Client, tenants: Tenants) -> None:
    owner = tenants.owner
    plain = post(http, owner, cloud_event("p1", month=10), "application/json")
    assert plain.status_code == 400
    assert violations(plain) == ("UNSUPPORTED_CONTENT_TYPE", ["body.content_type"])
    not_json = http.post(
        f"/v1/tenants/{owner.tenant}/usageEvents:ingest",
        content=b'{"id": NaN}',
        headers={**auth(owner.token), "content-type": STRUCTURED},
    )
    assert not_json.status_code == 400 and violations(not_json) == ("INVALID_USAGE_EVENTS", ["body"])
    assert violations(post(http, owner, cloud_event("p2", month=10), BATCH)) == (
        "INVALID_USAGE_EVENTS",
        ["body"],
    )
    assert violations(post(http, owner, [], BATCH)) == ("INVALID_USAGE_EVENTS", ["events"])
    too_many = [cloud_event(f"m{i}", "model_input_tokens", month=10) for i in range(1001)]
    assert violations(post(http, owner, too_many, BATCH)) == ("INVALID_USAGE_EVENTS", ["events"])
    assert used(http, owner, 10)["agent_runs"] == (0, 0)


def test_a_viewer_may_not_ingest_and_nobody_ingests_for_another_tenant(
    http: httpx.Client, tenants: Tenants
) -> None:
    refused = post(http, tenants.viewer, cloud_event("v1", month=11), STRUCTURED)
    assert refused.status_code == 403 and violations(refused)[0] == "MISSING_PERMISSION"
    foreign = post(
        http, SignedUp(tenants.owner.tenant, tenants.other.token), cloud_event("v2", month=11), STRUCTURED
    )
    assert foreign.status_code == 403 and violations(foreign)[0] == "TENANT_MISMATCH"
    assert used(http, tenants.owner, 11)["agent_runs"] == (0, 0)


def test_an_operator_defines_a_meter_and_a_viewer_reads_usage_per_day_and_model(
    http: httpx.Client, tenants: Tenants
) -> None:
    owner = tenants.owner
    definition = {
        "displayName": "LLM tokens",
        "eventType": "com.example.llm.tokens",
        "aggregation": "AGGREGATION_SUM",
        "valueProperty": "$.tokens",
        "groupBy": {"model": "$.model"},
    }
    made = http.post(
        f"/v1/tenants/{owner.tenant}/meters",
        params={"meterId": "tokens"},
        json=definition,
        headers=auth(owner.token),
    )
    assert made.status_code == 200, made.text
    assert made.json()["name"] == f"tenants/{owner.tenant}/meters/tokens"
    listed = http.get(f"/v1/tenants/{owner.tenant}/meters", headers=auth(owner.token))
    assert [m["name"].rsplit("/", 1)[1] for m in listed.json()["meters"]] == [
        "agent_runs",
        "model_calls",
        "model_input_tokens",
        "model_output_tokens",
        "tool_calls",
        "tokens",
    ]

    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - dt.timedelta(days=1)

    def tokens(event_id: str, time: dt.datetime, count: int, model: str) -> dict:
        return {
            **cloud_event(event_id),
            "type": "com.example.llm.tokens",
            "time": time.isoformat(),
            "data": {"tokens": count, "model": model},
        }

    batch = [
        tokens("k1", yesterday + dt.timedelta(hours=12), 100, "small"),
        tokens("k2", yesterday + dt.timedelta(hours=13), 40, "large"),
        tokens("k3", today + dt.timedelta(seconds=1), 5, "small"),
    ]
    assert post(http, owner, batch, BATCH).json() == {"acceptedCount": 3}

    viewer = tenants.viewer.token
    body = {
        "startTime": rfc3339(yesterday),
        "endTime": rfc3339(today + dt.timedelta(days=1)),
        "windowSize": "WINDOW_SIZE_DAY",
        "timeZone": "UTC",
        "groupBy": ["model"],
    }
    answer = http.post(
        f"/v1/tenants/{owner.tenant}/meters/tokens:queryUsage", json=body, headers=auth(viewer)
    )
    assert answer.status_code == 200, answer.text
    assert [(w["startTime"], w["value"], w["groupBy"]) for w in answer.json()["windows"]] == [
        (rfc3339(yesterday), 40, {"model": "large"}),
        (rfc3339(yesterday), 100, {"model": "small"}),
        (rfc3339(today), 5, {"model": "small"}),
    ]
    refused = http.post(
        f"/v1/tenants/{owner.tenant}/meters",
        params={"meterId": "other"},
        json=definition,
        headers=auth(viewer),
    )
    assert refused.status_code == 403 and violations(refused)[0] == "MISSING_PERMISSION"


def test_an_admin_sets_a_usage_alert_and_a_viewer_sees_it_fire_once(
    http: httpx.Client, tenants: Tenants
) -> None:
    owner, viewer = tenants.owner, tenants.viewer
    alerts = f"/v1/tenants/{owner.tenant}/usageAlerts"
    alert = {"meter": "model_calls", "thresholds": [{"type": "TYPE_QUANTITY", "value": 2}]}
    refused = http.post(alerts, params={"usageAlertId": "calls"}, json=alert, headers=auth(viewer.token))
    assert refused.status_code == 403, refused.text
    made = http.post(alerts, params={"usageAlertId": "calls"}, json=alert, headers=auth(owner.token))
    assert made.status_code == 200, made.text
    name = made.json()["name"]
    now = rfc3339(dt.datetime.now(dt.UTC).replace(microsecond=0))
    for event_id in ("a1", "a1", "a2"):  # the repeat is a duplicate: 2 calls in all
        sent = post(http, owner, cloud_event(event_id, meter="model_calls", time=now), STRUCTURED)
        assert sent.status_code == 200, sent.text
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    while not (
        events := http.get(f"/v1/{name}/events", headers=auth(viewer.token)).json().get("usageAlertEvents")
    ):
        assert dt.datetime.now(dt.UTC) < deadline, "the alert did not fire"
        time.sleep(0.1)
    assert [(e["threshold"], e["quantity"]) for e in events] == [({"type": "TYPE_QUANTITY", "value": 2}, 2)]
    listed = http.get(alerts, headers=auth(viewer.token)).json()
    assert [a["name"] for a in listed["usageAlerts"]] == [name]
    assert http.delete(f"/v1/{name}", headers=auth(owner.token)).status_code == 200
    assert http.get(f"/v1/{name}", headers=auth(owner.token)).status_code == 404
