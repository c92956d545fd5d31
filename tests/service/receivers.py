"""A real HTTP server on 127.0.0.1 (uvicorn) that records requests and answers as a test scripts it.

It stands in for a tenant's own API (HTTP tools), a webhook receiver, Slack's incoming
webhooks and Twilio's Messages API (:func:`twilio_answer`, the wire format of
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from services.cli.stack import free_port

Scope = MutableMapping[str, Any]


@dataclass(frozen=True)
class Received:
    """One request the server got."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass(frozen=True)
class Answer:
    """What the server answers: a status, a body, headers, and a delay first (seconds)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Script = Callable[[Received], Answer | Awaitable[Answer]]


@dataclass
class Receiver:
    """The server's address, what it received, and the script that answers (replace it per test)."""

    port: int
    script: Script = lambda request: Answer(200, b"{}", {"content-type": "application/json"})
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


def _app(receiver: Receiver) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = Received(scope["method"], scope["path"], scope["query_string"].decode(), headers, body)
        receiver.received.append(request)
        answer = receiver.script(request)
        if not isinstance(answer, Answer):
            answer = await answer
        if answer.delay:
            await asyncio.sleep(answer.delay)
        raw_headers = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": answer.body})

    return app


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """Runs a :class:`Receiver` on a free port of 127.0.0.1 for the block."""
    served = Receiver(free_port())
    config = uvicorn.Config(
        _app(served), host="127.0.0.1", port=served.port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the receiver did not start"
        await asyncio.sleep(0.02)
    try:
        yield served
    finally:
        server.should_exit = True
        await task


def json_answer(value: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(value).encode(), {"content-type": "application/json"})


def twilio_answer(request: Received, account_sid: str, auth_token: str) -> Answer:
    """Answers as Twilio's ``Messages.json`` does: 201 and the Message, or its error JSON.

    Checks what Twilio checks: the account in the path, basic auth of the SID and token,
    a form with ``To``, ``From`` and ``Body``; a ``To`` of ``+15005550001`` is refused
    as Twilio's test credentials refuse it (error 21211, invalid 'To' number).
    """
    expected = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
    if request.headers.get("authorization") != expected:
        return json_answer({"code": 20003, "message": "Authenticate", "status": 401}, 401)
    if request.method != "POST" or request.path != f"/2010-04-01/Accounts/{account_sid}/Messages.json":
        return json_answer(
            {"code": 20404, "message": "The requested resource was not found", "status": 404}, 404
        )
    form = request.form()
    if form.get("To") == "+15005550001":
        return json_answer(
            {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}, 400
        )
    message = {
        "sid": "SM" + "0" * 32,
        "status": "queued",
        "to": form["To"],
        "from": form["From"],
        "body": form["Body"],
    }
    return json_answer(message, 201)
