"""Model calls as spans: an httpx transport under the OpenAI client that traces each request.

With tracing on (:func:`services.kit.tracing.tracing_enabled`), every request
the ``openai`` client sends is a CLIENT span named ``chat <model>`` with the
OpenTelemetry GenAI semantic conventions' attributes (``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
``server.address``), and carries the W3C ``traceparent`` on to the endpoint.
Prompts and replies are never recorded.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx  # the HTTP library the openai client is built on
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.kit.tracing import tracing_enabled

_tracer = trace.get_tracer("orchestrall.agent.model")


class TracedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so that each model request is a span (see the module docstring).

    Args:
        inner: The transport that sends the requests.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Sends ``request`` inside a ``chat <model>`` span; returns the endpoint's response."""
        body = _json(request.content)
        model = str(body.get("model", ""))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "server.address": request.url.host,
        }
        if request.url.port:
            attributes["server.port"] = request.url.port
        with _tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            propagate.inject(request.headers)
            response = await self._inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(response.status_code))
                return response
            content = await response.aread()
            answer = _json(content)
            usage = answer.get("usage") or {}
            if answer.get("model"):
                span.set_attribute("gen_ai.response.model", str(answer["model"]))
            for key, name in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
                if isinstance(usage.get(key), int):
                    span.set_attribute(f"gen_ai.usage.{name}", usage[key])
            return httpx.Response(
                response.status_code, headers=response.headers, content=content, request=request
            )

    async def aclose(self) -> None:
        """Closes the inner transport."""
        await self._inner.aclose()


def _json(content: bytes) -> dict[str, Any]:
    try:
        value = json.loads(content) if content else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def model_http_client() -> httpx.AsyncClient | None:
    """The HTTP client for the OpenAI client: traced when tracing is on; None (openai's own) otherwise."""
    if not tracing_enabled():
        return None
    return httpx.AsyncClient(transport=TracedTransport(httpx.AsyncHTTPTransport()))
