"""Schedules over REST through Envoy: create, read with next fire times, pause, resume, list, delete."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.cli.stack import Stack
from tests.mesh.conftest import auth, grpc_headers
from tests.mesh.test_webhooks_gateway import _workflow

pytestmark = pytest.mark.mesh


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as client:
        yield client


def test_a_schedules_life_over_rest(http: httpx.Client) -> None:
    token, workflow = _workflow(http)
    headers = auth(token)
    bad = http.post(
        f"/v1/{workflow}/schedules", json={"cron": "every day", "timeZone": "Nowhere/City"}, headers=headers
    )
    assert bad.status_code == 400, bad.text
    (details,) = [d for d in bad.json()["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert {v["field"] for v in details["fieldViolations"]} == {"schedule.cron", "schedule.time_zone"}
    created = http.post(
        f"/v1/{workflow}/schedules",
        params={"scheduleId": "weekday-mornings"},
        json={
            "cron": "30 8 * * 1-5",
            "timeZone": "Europe/Amsterdam",
            "overlapPolicy": "OVERLAP_POLICY_SKIP",
            "catchupWindow": "600s",
        },
        headers=headers,
    )
    assert created.status_code == 200, created.text
    assert not grpc_headers(created)
    name = created.json()["name"]
    assert name == f"{workflow}/schedules/weekday-mornings"
    got = http.get(f"/v1/{name}", headers=headers).json()
    assert got["catchupWindow"] == "600s" and got["overlapPolicy"] == "OVERLAP_POLICY_SKIP"
    local = [
        dt.datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Amsterdam"))
        for t in got["nextFireTimes"]
    ]
    assert len(local) == 5 and all((t.hour, t.minute) == (8, 30) and t.isoweekday() <= 5 for t in local)
    paused = http.post(f"/v1/{name}:pause", json={}, headers=headers)
    assert (
        paused.status_code == 200 and paused.json()["paused"] is True and "nextFireTimes" not in paused.json()
    )
    resumed = http.post(f"/v1/{name}:resume", json={}, headers=headers)
    assert resumed.status_code == 200 and "paused" not in resumed.json()
    listed = http.get(f"/v1/{workflow}/schedules", headers=headers).json()
    assert [s["name"] for s in listed["schedules"]] == [name]
    assert http.delete(f"/v1/{name}", headers=headers).status_code == 200
    assert http.get(f"/v1/{name}", headers=headers).status_code == 404
    assert http.post(f"/v1/{workflow}/schedules", json={"cron": "0 9 * * *"}).status_code == 401
