"""HTTP tools and notification channels over REST through Envoy, with real HTTP on both sides."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from services.cli.stack import Stack
from services.kit.webhooks import new_secret, verify
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up

pytestmark = pytest.mark.mesh


class _Api(BaseHTTPRequestHandler):
    """A tenant's API and webhook receiver on 127.0.0.1 (the stack's allow-list)."""

    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._record(b"")
        self._answer(b'{"order": "A-17", "status": "shipped"}')

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._record(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self._answer(b"{}")

    def _record(self, body: bytes) -> None:
        _Api.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_http_tool_is_defined_and_called_over_rest(stack: Stack, http: httpx.Client, api: str) -> None:
    signed, other = sign_up(http, "htrest"), sign_up(http, "htother")
    headers = auth(signed.token)
    base = f"/v1/tenants/{signed.tenant}"
    tool = {
        "description": "Looks up an order.",
        "method": "METHOD_GET",
        "urlTemplate": f"{api}/orders/{{order_id}}",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        "authHeaderName": "x-api-key",
        "authHeaderValue": "k3y-s3cr3t",
    }
    made = http.post(f"{base}/httpTools?httpToolId=orders", json=tool, headers=headers)
    assert made.status_code == 200, made.text
    assert "k3y-s3cr3t" not in made.text and made.json()["authHeaderName"] == "x-api-key"
    called = http.post(
        f"{base}/httpTools/orders:call",
        json={"parent": f"tenants/{signed.tenant}", "arguments": {"order_id": "A-17"}},
        headers=headers,
    )
    assert called.status_code == 200, called.text
    assert called.json()["result"] == {"order": "A-17", "status": "shipped"}
    path, seen, _ = _Api.received[-1]
    assert (path, seen["x-api-key"]) == ("/orders/A-17", "k3y-s3cr3t")
    # Bad input is a field violation; another tenant reads nothing.
    bad = http.post(
        f"{base}/httpTools", json={**tool, "urlTemplate": "https://x.example/{?q}"}, headers=headers
    )
    assert bad.status_code == 400, bad.text
    assert "http_tool.url_template" in bad.text
    assert http.get(f"{base}/httpTools/orders", headers=auth(other.token)).status_code == 403
    assert http.get(f"{base}/httpTools", headers=headers).json()["httpTools"][0]["name"].endswith("/orders")


def test_a_signed_webhook_notification_over_rest(stack: Stack, http: httpx.Client, api: str) -> None:
    signed = sign_up(http, "ncrest")
    headers = auth(signed.token)
    base = f"/v1/tenants/{signed.tenant}"
    secret = new_secret()
    made = http.post(
        f"{base}/notificationChannels?notificationChannelId=hook",
        json={"displayName": "Orders", "webhook": {"url": f"{api}/hook", "secret": secret}},
        headers=headers,
    )
    assert made.status_code == 200, made.text
    assert secret not in made.text
    sent = http.post(
        f"{base}/notificationChannels/hook:send",
        json={"message": "Order A-17 shipped.", "requestId": "r-1"},
        headers=headers,
    )
    assert sent.status_code == 200, sent.text
    delivery = sent.json()
    assert (delivery["state"], delivery["attempts"]) == ("STATE_SUCCEEDED", 1)
    path, seen, body = _Api.received[-1]
    assert path == "/hook"
    verify(
        secret, body.decode(), {k: seen[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    )
    listed = http.get(f"{base}/notificationChannels/hook/deliveries", headers=headers)
    assert [d["name"] for d in listed.json()["notificationDeliveries"]] == [delivery["name"]]
    got = http.get(f"/v1/{delivery['name']}", headers=headers)
    assert got.status_code == 200 and got.json()["state"] == "STATE_SUCCEEDED"
    unknown = http.post(f"{base}/notificationChannels", json={"displayName": "no kind"}, headers=headers)
    assert unknown.status_code == 400, unknown.text
