"""The issue's whole job through Envoy: one workflow with a branch, parallel steps, an approval and a
compensation, started by the API, by a signed webhook and by a schedule, on the real model server.

Its graph: ``check`` (CEL on the input's amount) takes ``approve`` (a person decides, through
``:signal``) or ``auto`` (a note); ``book`` (an agent run, compensated by a note) follows either;
``left`` and ``right`` run in parallel after it; ``verify`` (CEL on the input's ``verified``) fails
for an input without one, and the run then compensates ``book``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.cli.stack import Stack
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import SignedUp, sign_up

pytestmark = pytest.mark.mesh
TIMEOUT_SECONDS = 120.0


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as client:
        yield client


def _note(step_id: str, depends: list[str], text: str) -> dict[str, object]:
    return {"id": step_id, "dependsOn": depends, "notification": {"channel": "ops", "messageTemplate": text}}


def _workflow(http: httpx.Client, owner: SignedUp) -> str:
    t, headers = f"tenants/{owner.tenant}", auth(owner.token)
    agent = {"instructions": "Answer with one word.", "maxOutputTokens": 8, "temperature": 0}
    assert http.post(f"/v1/{t}/agents", params={"agentId": "booker"}, json=agent, headers=headers).is_success
    steps = [
        {
            "id": "check",
            "condition": {
                "expression": "input_json.amount > 100",
                "thenSteps": ["approve"],
                "elseSteps": ["auto"],
            },
        },
        {
            "id": "approve",
            "dependsOn": ["check"],
            "approval": {"promptTemplate": "Book {{ input_json.amount }}?"},
        },
        _note("auto", ["check"], "small order"),
        {
            "id": "book",
            "dependsOn": ["approve", "auto"],
            "agentRun": {
                "agent": f"{t}/agents/booker",
                "inputTemplate": "Book {{ input_json.amount }} units.",
            },
            "compensation": {"notification": {"channel": "ops", "messageTemplate": "unbook: {{ output }}"}},
        },
        _note("left", ["book"], "left"),
        _note("right", ["book"], "right"),
        {"id": "verify", "dependsOn": ["left", "right"], "condition": {"expression": "input_json.verified"}},
    ]
    created = http.post(
        f"/v1/{t}/workflows", params={"workflowId": "orders"}, json={"steps": steps}, headers=headers
    )
    assert created.status_code == 200, created.text
    return str(created.json()["name"])


def _until(http: httpx.Client, run: str, token: str, states: tuple[str, ...]) -> dict[str, object]:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while (body := http.get(f"/v1/{run}", headers=auth(token)).json())["state"] not in states:
        assert time.monotonic() < deadline, f"{run} stayed {body['state']}"
        time.sleep(0.1)
    return dict(body)


def _approve(http: httpx.Client, run: str, token: str) -> None:
    _until(http, run, token, ("RUN_STATE_WAITING",))
    body = {"signalName": "approve", "payload": {"approved": True}, "requestId": "yes"}
    assert http.post(f"/v1/{run}:signal", json=body, headers=auth(token)).status_code == 200


def _states(run: dict[str, object]) -> dict[str, str]:
    return {s["stepId"]: s["state"].removeprefix("RUN_STATE_") for s in run["steps"]}  # type: ignore[attr-defined]


def _history(http: httpx.Client, run: str, token: str) -> list[tuple[str, str]]:
    events = http.get(f"/v1/{run}/events", params={"pageSize": 1000}, headers=auth(token)).json()["events"]
    return [(e["type"].removeprefix("dev.orchestrall.workflow."), e.get("stepId", "")) for e in events]


def test_one_workflow_runs_from_the_api_a_signed_webhook_and_a_schedule(http: httpx.Client) -> None:
    owner = sign_up(http, "graph")
    headers = auth(owner.token)
    workflow = _workflow(http, owner)

    # The API: a big order waits for its approval, then books and verifies.
    started = http.post(
        f"/v1/{workflow}/runs", json={"input": json.dumps({"amount": 500, "verified": True})}, headers=headers
    )
    api_run = started.json()["name"]
    _approve(http, api_run, owner.token)
    by_api = _until(http, api_run, owner.token, ("RUN_STATE_SUCCEEDED", "RUN_STATE_FAILED"))

    # A signed webhook: a small order takes the other branch, no person needed.
    trigger = http.post(
        f"/v1/{workflow}/triggers", params={"triggerId": "shop"}, json={}, headers=headers
    ).json()
    body = json.dumps({"amount": 5, "verified": True})
    delivery, now = f"msg_{secrets.token_hex(8)}", dt.datetime.now(dt.UTC)
    signed = {
        "webhook-id": delivery,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(trigger["secret"]).sign(delivery, now, body),
        "content-type": "application/json",
    }
    delivered = http.post(trigger["urlPath"], content=body, headers=signed)
    assert delivered.status_code == 200, delivered.text
    by_webhook = _until(
        http, delivered.json()["run"], owner.token, ("RUN_STATE_SUCCEEDED", "RUN_STATE_FAILED")
    )

    # A schedule (every second, SKIP while a run is waiting): its input lacks `verified`, so the
    # run fails at `verify` after booking, and compensates the booking.
    schedule = {
        "cron": "* * * * * *",
        "input": json.dumps({"amount": 900}),
        "overlapPolicy": "OVERLAP_POLICY_SKIP",
    }
    made = http.post(
        f"/v1/{workflow}/schedules", params={"scheduleId": "nightly"}, json=schedule, headers=headers
    )
    assert made.status_code == 200, made.text
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not (
        runs := http.get(f"/v1/{workflow}/runs", headers=headers).json().get("workflowRuns", [])
    ) or not [r for r in runs if r["trigger"] == made.json()["name"]]:
        assert time.monotonic() < deadline, "the schedule started no run"
        time.sleep(0.2)
    assert http.post(f"/v1/{made.json()['name']}:pause", json={}, headers=headers).status_code == 200
    scheduled_run = next(r for r in runs if r["trigger"] == made.json()["name"])["name"]
    _approve(http, scheduled_run, owner.token)
    by_schedule = _until(http, scheduled_run, owner.token, ("RUN_STATE_SUCCEEDED", "RUN_STATE_FAILED"))

    everything = dict.fromkeys(("check", "book", "left", "right", "verify"), "SUCCEEDED")
    assert by_api["state"] == "RUN_STATE_SUCCEEDED", by_api
    assert _states(by_api) == everything | {"approve": "SUCCEEDED", "auto": "SKIPPED"}
    assert by_api["trigger"] == "api"
    assert by_webhook["state"] == "RUN_STATE_SUCCEEDED", by_webhook
    assert _states(by_webhook) == everything | {"approve": "SKIPPED", "auto": "SUCCEEDED"}
    assert by_webhook["trigger"] == trigger["name"]
    assert by_schedule["state"] == "RUN_STATE_FAILED"
    assert _states(by_schedule) == everything | {
        "approve": "SUCCEEDED",
        "auto": "SKIPPED",
        "verify": "FAILED",
    }
    assert [s["compensated"] for s in by_schedule["steps"] if s["stepId"] == "book"] == [True]  # type: ignore[attr-defined]
    api_history = _history(http, api_run, owner.token)
    assert [e for e in api_history if e[1] == "approve"] == [
        ("step.scheduled", "approve"),
        ("approval.requested", "approve"),
        ("signal.received", "approve"),
        ("approval.given", "approve"),
        ("step.succeeded", "approve"),
    ]
    scheduled_history = _history(http, scheduled_run, owner.token)
    assert scheduled_history[-4:] == [
        ("compensation.started", "book"),
        ("notification.sent", "book"),  # the compensation's own note
        ("compensation.succeeded", "book"),
        ("run.failed", ""),
    ]
