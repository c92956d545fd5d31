"""Webhook triggers through Envoy: deliveries signed as a Standard Webhooks sender signs them.

The sender's side is the ``standardwebhooks`` library's ``Webhook.sign`` with the
secret ``CreateTrigger`` returned; deliveries are plain HTTP posts with httpx to
the trigger's ``url_path`` on the gateway, with no token.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.cli.stack import Stack
from tests.mesh.conftest import auth, grpc_headers, stored_rows
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as client:
        yield client


@dataclass(frozen=True)
class Hook:
    """A tenant's workflow with one webhook trigger."""

    token: str
    workflow: str
    trigger: dict[str, str]


def _workflow(http: httpx.Client) -> tuple[str, str]:
    tenant = sign_up(http, "hooks")
    headers = auth(tenant.token)
    parent = f"tenants/{tenant.tenant}"
    agent = http.post(
        f"/v1/{parent}/agents",
        params={"agentId": "echo"},
        json={"instructions": "Answer in one word.", "maxOutputTokens": 8, "temperature": 0},
        headers=headers,
    )
    assert agent.status_code == 200, agent.text
    workflow = http.post(
        f"/v1/{parent}/workflows",
        params={"workflowId": "intake"},
        json={"steps": [{"id": "a", "agentRun": {"agent": f"{parent}/agents/echo"}}]},
        headers=headers,
    )
    assert workflow.status_code == 200, workflow.text
    return tenant.token, workflow.json()["name"]


@pytest.fixture(scope="module")
def hook(http: httpx.Client) -> Hook:
    token, workflow = _workflow(http)
    created = http.post(
        f"/v1/{workflow}/triggers", params={"triggerId": "orders"}, json={}, headers=auth(token)
    )
    assert created.status_code == 200, created.text
    return Hook(token, workflow, created.json())


def _signed(
    secret: str, body: str, *, delivery: str | None = None, at: dt.datetime | None = None
) -> dict[str, str]:
    """The headers a Standard Webhooks sender sends with ``body``."""
    delivery = delivery or f"msg_{secrets.token_hex(8)}"
    at = at or dt.datetime.now(dt.UTC)
    return {
        "webhook-id": delivery,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery, at, body),
        "content-type": "application/json",
    }


def _error(response: httpx.Response) -> str:
    (info,) = [d for d in response.json()["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    return str(info["reason"])


def test_the_secret_is_stored_sealed(stack: Stack, hook: Hook) -> None:
    ((sealed,),) = stored_rows(
        stack, "workflow", "SELECT secret_sealed FROM workflow_triggers WHERE id = 'orders'"
    )
    secret = hook.trigger["secret"]
    raw = base64.b64decode(secret.removeprefix("whsec_"))
    assert secret.encode() not in bytes(sealed) and raw not in bytes(sealed)


def test_create_returns_the_secret_once(http: httpx.Client, hook: Hook) -> None:
    name = f"{hook.workflow}/triggers/orders"
    assert hook.trigger["name"] == name
    assert hook.trigger["urlPath"] == f"/v1/{name}:deliver"
    assert hook.trigger["secret"].startswith("whsec_")
    assert len(Webhook(hook.trigger["secret"])._whsecret) == 32
    got = http.get(f"/v1/{name}", headers=auth(hook.token))
    assert got.status_code == 200, got.text
    assert "secret" not in got.json()
    listed = http.get(f"/v1/{hook.workflow}/triggers", headers=auth(hook.token))
    assert [t["name"] for t in listed.json()["triggers"]] == [name]
    assert "secret" not in listed.json()["triggers"][0]
    again = http.post(
        f"/v1/{hook.workflow}/triggers", params={"triggerId": "orders"}, json={}, headers=auth(hook.token)
    )
    assert again.status_code == 409 and _error(again) == "TRIGGER_ALREADY_EXISTS"


def test_a_signed_delivery_starts_one_run_per_webhook_id(http: httpx.Client, hook: Hook) -> None:
    body = '{"order": 42, "note": "caf\u00e9"}'
    headers = _signed(hook.trigger["secret"], body, delivery="msg_order_42")
    delivered = http.post(hook.trigger["urlPath"], content=body.encode(), headers=headers)
    assert delivered.status_code == 200, delivered.text
    assert delivered.headers["content-type"].startswith("application/json")
    assert not grpc_headers(delivered)
    run_name = delivered.json()["run"]
    assert run_name.startswith(f"{hook.workflow}/runs/")
    run = http.get(f"/v1/{run_name}", headers=auth(hook.token))
    assert run.status_code == 200, run.text
    assert run.json()["input"] == body
    assert run.json()["trigger"] == hook.trigger["name"]
    # The sender retries the same delivery (a new timestamp and signature): the same run.
    retried = http.post(
        hook.trigger["urlPath"],
        content=body.encode(),
        headers=_signed(hook.trigger["secret"], body, delivery="msg_order_42"),
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["run"] == run_name
    other = http.post(
        hook.trigger["urlPath"], content=body.encode(), headers=_signed(hook.trigger["secret"], body)
    )
    assert other.json()["run"] != run_name
    runs = http.get(f"/v1/{hook.workflow}/runs", headers=auth(hook.token)).json()["workflowRuns"]
    assert sum(r["name"] == run_name for r in runs) == 1


def test_unsigned_forged_and_stale_deliveries_are_refused(http: httpx.Client, hook: Hook) -> None:
    url, secret = hook.trigger["urlPath"], hook.trigger["secret"]
    body = '{"order": 7}'
    good = _signed(secret, body)

    def post(headers: dict[str, str], content: str = body, path: str = url) -> httpx.Response:
        return http.post(path, content=content.encode(), headers=headers)

    tampered = post(good, '{"order": 7000}')
    assert (tampered.status_code, _error(tampered)) == (401, "INVALID_SIGNATURE")
    forged = post(_signed("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(), body))
    assert (forged.status_code, _error(forged)) == (401, "INVALID_SIGNATURE")
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = post({k: v for k, v in good.items() if k != missing})
        assert (partial.status_code, _error(partial)) == (401, "INVALID_SIGNATURE"), missing
    garbled = post({**good, "webhook-signature": "v1,not-base64!"})
    assert (garbled.status_code, _error(garbled)) == (401, "INVALID_SIGNATURE")
    # A delivery captured and replayed later than the 5-minute window, even correctly signed.
    stale = post(_signed(secret, body, at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)))
    assert (stale.status_code, _error(stale)) == (400, "TIMESTAMP_OUT_OF_RANGE")
    early = post(_signed(secret, body, at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)))
    assert (early.status_code, _error(early)) == (400, "TIMESTAMP_OUT_OF_RANGE")
    # An unknown trigger answers as a bad signature does: nothing tells which triggers exist.
    unknown = post(_signed(secret, body), path=url.replace("/triggers/orders:", "/triggers/nope:"))
    assert (unknown.status_code, _error(unknown)) == (401, "INVALID_SIGNATURE")
    empty = post(_signed(secret, ""), "")
    assert (empty.status_code, _error(empty)) == (400, "INVALID_ARGUMENT")


def test_a_deleted_trigger_refuses_deliveries(http: httpx.Client) -> None:
    token, workflow = _workflow(http)
    created = http.post(f"/v1/{workflow}/triggers", json={}, headers=auth(token)).json()
    body = "hello"
    assert (
        http.post(created["urlPath"], content=body, headers=_signed(created["secret"], body)).status_code
        == 200
    )
    deleted = http.delete(f"/v1/{created['name']}", headers=auth(token))
    assert deleted.status_code == 200, deleted.text
    refused = http.post(created["urlPath"], content=body, headers=_signed(created["secret"], body))
    assert (refused.status_code, _error(refused)) == (401, "INVALID_SIGNATURE")
    assert http.get(f"/v1/{created['name']}", headers=auth(token)).status_code == 404
