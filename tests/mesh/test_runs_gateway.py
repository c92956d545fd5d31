"""Runs over REST through Envoy: Server-Sent Events, resuming a stream, waiting, approvals, cancelling."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from services.agent.tools import route_distance
from services.cli.demo import server_sent_events
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh

PLANNER = {
    "instructions": "You plan truck routes. Use the route_distance tool, then answer in one sentence.",
    "tools": ["tools/route_distance"],
    "toolChoice": "TOOL_CHOICE_REQUIRED",
    "temperature": 0,
    "maxOutputTokens": 48,
}


def stream(http: httpx.Client, run: str, token: str, after: int = 0) -> list[dict[str, Any]]:
    query = f"?afterSequence={after}" if after else ""
    with http.stream("GET", f"/v1/{run}:streamEvents{query}", headers=auth(token)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(server_sent_events(response.iter_lines()))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [next(k for k in event if k not in ("sequence", "createTime")) for event in events]


def test_a_run_streams_to_a_rest_client_as_server_sent_events_and_resumes(http: httpx.Client) -> None:
    signed = sign_up(http, "sse")
    base = f"/v1/tenants/{signed.tenant}"
    assert (
        http.post(f"{base}/agents?agentId=planner", json=PLANNER, headers=auth(signed.token)).status_code
        == 200
    )
    started = http.post(
        f"{base}/agents/planner/runs", json={"input": "Rotterdam to Berlin?"}, headers=auth(signed.token)
    )
    assert started.status_code == 200 and started.json()["state"] == "STATE_RUNNING", started.text
    run = started.json()["name"]
    events = stream(http, run, signed.token)
    ended = http.post(f"/v1/{run}:wait", json={}, headers=auth(signed.token)).json()
    resumed = stream(http, run, signed.token, after=2)
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert kinds(events)[:4] == ["runStarted", "modelCall", "toolCallStarted", "toolCallFinished"]
    call = events[3]["toolCallFinished"]
    assert json.loads(call["result"]) == route_distance(json.loads(call["arguments"]))
    deltas = "".join(e["textDelta"]["text"] for e in events if "textDelta" in e)
    assert deltas.strip() == ended["output"] and ended["state"] == "STATE_SUCCEEDED"
    assert events[-1]["runFinished"] == ended
    assert resumed == events[2:]


def test_an_approval_and_a_cancel_over_rest(http: httpx.Client) -> None:
    signed = sign_up(http, "approve")
    headers = auth(signed.token)
    base = f"/v1/tenants/{signed.tenant}"
    guarded = {**PLANNER, "approvalRequiredTools": ["tools/route_distance"]}
    assert http.post(f"{base}/agents?agentId=guarded", json=guarded, headers=headers).status_code == 200
    run = http.post(f"{base}/agents/guarded/runs", json={"input": "Paris to Milan?"}, headers=headers).json()[
        "name"
    ]
    waiting = http.post(f"/v1/{run}:wait", json={"timeout": "120s"}, headers=headers).json()
    assert waiting["state"] == "STATE_REQUIRES_ACTION", waiting
    (pending,) = waiting["pendingToolCalls"]
    assert kinds(stream(http, run, signed.token))[-1] == "requiresAction"
    rejected = http.post(
        f"/v1/{run}:submitToolApprovals",
        json={"approvals": [{"toolCallId": "call_other", "decision": "DECISION_APPROVE"}]},
        headers=headers,
    )
    assert rejected.status_code == 400, rejected.text
    approved = http.post(
        f"/v1/{run}:submitToolApprovals",
        json={"approvals": [{"toolCallId": pending["id"], "decision": "DECISION_APPROVE"}]},
        headers=headers,
    )
    assert approved.status_code == 200 and approved.json()["state"] == "STATE_RUNNING", approved.text
    ended = http.post(f"/v1/{run}:wait", json={}, headers=headers).json()
    assert ended["state"] == "STATE_SUCCEEDED" and ended["toolCalls"][0]["id"] == pending["id"]

    second = http.post(f"{base}/agents/guarded/runs", json={"input": "Paris to Milan?"}, headers=headers)
    waiting = http.post(f"/v1/{second.json()['name']}:wait", json={}, headers=headers).json()
    cancelled = http.post(f"/v1/{waiting['name']}:cancel", json={}, headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "STATE_CANCELLED", cancelled.text
    late = http.post(
        f"/v1/{waiting['name']}:submitToolApprovals",
        json={
            "approvals": [
                {"toolCallId": waiting["pendingToolCalls"][0]["id"], "decision": "DECISION_APPROVE"}
            ]
        },
        headers=headers,
    )
    assert late.status_code == 400 and late.json()["details"][0]["reason"] == "RUN_NOT_AWAITING_APPROVAL"
