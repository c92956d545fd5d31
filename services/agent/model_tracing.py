"""Model calls as spans: one ``chat <model>`` CLIENT span per call, and its ``traceparent`` sent on.

With tracing on (:func:`services.kit.tracing.tracing_enabled`), every model call of a
run is a CLIENT span named ``chat <model>`` with the OpenTelemetry GenAI semantic
conventions' attributes (``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons``, ``server.address``).
The span is made by the runner around the whole streamed call (:func:`chat_span`), so it
lasts until the last chunk and carries the usage only known then; an httpx transport
under the OpenAI client (:class:`PropagatingTransport`) carries the W3C ``traceparent``
of the current span on to the endpoint. Prompts and replies are never recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2 as httpx  # the HTTP library the openai client is built on
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from services.kit.tracing import tracing_enabled

_tracer = trace.get_tracer("orchestrall.agent.model")


@contextmanager
def chat_span(model: str, base_url: Any) -> Iterator[Span]:
    """Opens the ``chat <model>`` span of one model call; an exception leaving it marks it failed.

    Args:
        model: The requested model.
        base_url: The endpoint's base URL (an ``httpx.URL``), for ``server.address``/``server.port``.
    """
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "server.address": base_url.host,
    }
    if base_url.port:
        attributes["server.port"] = base_url.port
    with _tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        try:
            yield span
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", type(error).__name__)
            raise


def record_reply(span: Span, model: str, input_tokens: int, output_tokens: int, finish_reason: str) -> None:
    """Sets the response attributes of a finished model call on its span."""
    span.set_attribute("gen_ai.response.model", model)
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    if finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])


class PropagatingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so that each model request carries the current span's ``traceparent``.

    Args:
        inner: The transport that sends the requests.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Sends ``request`` with the W3C trace context headers; returns the (streamed) response."""
        propagate.inject(request.headers)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Closes the inner transport."""
        await self._inner.aclose()


def model_http_client() -> httpx.AsyncClient | None:
    """The OpenAI client's HTTP client: propagating when tracing is on; None (openai's own) otherwise."""
    if not tracing_enabled():
        return None
    return httpx.AsyncClient(transport=PropagatingTransport(httpx.AsyncHTTPTransport()))
