"""Model routing: which OpenAI-compatible endpoint answers a model call, with retries and fallback.

An agent's ``model`` is either a model ID, asked of the deployment's endpoint
(``OPENAI_BASE_URL``), or ``routes/{route}``: one of the routes the operator configured in
``ORCHESTRALL_MODEL_ROUTES`` (:class:`Route`). Routes are operator configuration, never
tenant data: their endpoints carry API keys, and tenants must not point the service at
hosts of their choosing. The route ``default`` always exists: unless the operator
configures one by that name it is the deployment's endpoint with the deployment's
default model.

A call on a route tries its endpoints in order. On each endpoint it makes up to
``retry.attempts`` attempts; an attempt fails when the endpoint cannot be reached, answers
HTTP 408, 409, 429 or 5xx, or sends no first chunk within the endpoint's
``timeout_seconds``, and the next attempt follows after an exponential backoff with full
jitter (Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015): a random
wait between 0 and ``min(backoff_max_seconds, backoff_base_seconds * 2 ** (n - 1))``
seconds before the n-th retry. Any other refusal (HTTP 400, 401, 403, 404...) is not
retried on that endpoint. After an endpoint's last failed attempt, the next endpoint is
tried at once. An endpoint answers once its first chunk has arrived; what happens after
that is the caller's (:func:`services.agent.runner._complete` does not retry a stream
that failed midway: its text already went to the run's events).

The ``openai`` SDK makes every call, with its own retries off (``max_retries=0``) so that
the attempts counted here are the attempts made.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Self

import httpx2 as httpx  # the HTTP library the openai client is built on
import openai
from openai.types.chat import ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from services.agent.model_tracing import model_http_client
from services.kit.metrics import ModelMetrics

#: The prefix of a route in an agent's ``model``: ``routes/{route}``.
ROUTE_PREFIX = "routes/"
#: The route agents that name no model use, unless their tenant's flag names another.
DEFAULT_ROUTE = "default"
#: A route's name: lowercase letters, digits and hyphens, starting with a letter (AIP-122 style).
ROUTE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
#: HTTP statuses after which an attempt is retried (timeouts, conflicts, rate limits, server errors).
RETRIED_STATUSES = frozenset({408, 409, 429})

Sleep = Callable[[float], Awaitable[Any]]


class RouteEndpoint(BaseModel):
    """One OpenAI-compatible endpoint of a route.

    Attributes:
        base_url: The endpoint's API root, ``http(s)://host[:port]/v1``.
        model: The model ID asked of it.
        name: What the run's ``model_call`` events call it; the model ID when empty.
        api_key: Its API key; neither this nor ``api_key_env`` for an endpoint without keys.
        api_key_env: The name of the environment variable holding its API key, read at
            start-up (a variable that is not set fails start-up).
        timeout_seconds: Seconds until its first chunk, past which the attempt fails.
    """

    # Errors never echo the input: it may hold an API key.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    base_url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2000)
    model: str = Field(min_length=1, max_length=200)
    name: str = Field("", max_length=200)
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_seconds: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise ValueError(f"api_key_env names {self.api_key_env}, which is not set")
        return self

    @property
    def label(self) -> str:
        """Returns the endpoint's name, or its model ID when it has none."""
        return self.name or self.model

    def key(self) -> str:
        """Returns the API key to send (a placeholder for an endpoint without keys)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env is not None:
            return os.environ[self.api_key_env]
        return "not-needed"


class RetryPolicy(BaseModel):
    """How a route retries one endpoint before falling over to the next.

    Attributes:
        attempts: Attempts per endpoint, the first included (1 means no retry).
        backoff_base_seconds: The backoff's cap before the first retry; it doubles per retry.
        backoff_max_seconds: The most any one backoff waits.
    """

    # Errors never echo the input: it may hold an API key.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    attempts: int = Field(2, ge=1, le=10)
    backoff_base_seconds: float = Field(0.5, ge=0, le=60)
    backoff_max_seconds: float = Field(8.0, ge=0, le=300)

    def backoff(self, retry: int, jitter: Callable[[], float]) -> float:
        """Returns the seconds to wait before the ``retry``-th retry (from 1), with full jitter.

        Args:
            retry: Which retry on the endpoint is next, from 1.
            jitter: Returns a random number in [0, 1).
        """
        cap = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (retry - 1))
        return jitter() * cap


class Route(BaseModel):
    """An ordered list of endpoints with a retry policy (one entry of ``ORCHESTRALL_MODEL_ROUTES``).

    Attributes:
        endpoints: Tried in order, 1 to 10.
        retry: How each endpoint is retried.
    """

    # Errors never echo the input: it may hold an API key.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    endpoints: list[RouteEndpoint] = Field(min_length=1, max_length=10)
    retry: RetryPolicy = RetryPolicy()


#: A route's name in ``ORCHESTRALL_MODEL_ROUTES``, checked against :data:`ROUTE_NAME`.
RouteName = Annotated[str, StringConstraints(pattern=ROUTE_NAME.pattern)]


def route_of(model: str) -> str | None:
    """Returns the route an agent's ``model`` names (``routes/{route}``), or None for a model ID."""
    return model.removeprefix(ROUTE_PREFIX) if model.startswith(ROUTE_PREFIX) else None


@dataclass(frozen=True)
class Endpoint:
    """An endpoint ready for calls: its client is made once, at start-up."""

    name: str
    model: str
    timeout_seconds: float
    client: openai.AsyncOpenAI


@dataclass(frozen=True)
class ResolvedRoute:
    """A route's endpoints, in order, and its retry policy; ``name`` is empty for a model asked by ID."""

    name: str
    endpoints: tuple[Endpoint, ...]
    retry: RetryPolicy


@dataclass(frozen=True)
class Attempt:
    """One failed attempt: the endpoint's name and what went wrong."""

    endpoint: str
    error: str


@dataclass
class OpenedStream:
    """A streamed call an endpoint has begun to answer.

    Attributes:
        route: The route that served it; empty for a model asked by ID.
        endpoint: The name of the endpoint that answered.
        model: The model ID asked of that endpoint.
        attempts: Attempts the call took, the failed ones included (1 or more).
        first: The first chunk; None when the stream ended without any.
        rest: The chunks after it.
    """

    route: str
    endpoint: str
    model: str
    attempts: int
    first: ChatCompletionChunk | None
    rest: AsyncIterator[ChatCompletionChunk]

    async def chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        """Yields every chunk of the reply, the first included."""
        if self.first is None:
            return
        yield self.first
        async for chunk in self.rest:
            yield chunk


class RouteUnavailable(Exception):
    """No endpoint of the route answered; ``attempts`` lists every failed attempt in order."""

    def __init__(self, route: str, attempts: list[Attempt], message: str = "") -> None:
        self.route = route
        self.attempts = attempts
        if not message:
            described = "; ".join(f"{a.endpoint}: {a.error}" for a in attempts)
            where = f"route {route!r}" if route else "the model endpoint"
            message = f"{where} did not answer after {len(attempts)} attempts ({described})"
        super().__init__(message)


def _failure(error: BaseException, timeout: float) -> tuple[str, bool]:
    """Returns what a failed attempt's error was, and whether the endpoint may be retried."""
    if isinstance(error, TimeoutError):
        return f"no first chunk within {timeout:g} s", True
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        return f"HTTP {status}", status >= 500 or status in RETRIED_STATUSES
    if isinstance(error, openai.APIConnectionError):
        return "could not be reached", True
    return f"failed ({type(error).__name__})", True


@dataclass
class ModelRouter:
    """Opens each model call's stream on the endpoint that answers it (see the module's docstring).

    Args:
        routes: The configured routes, by name; a ``default`` among them replaces the implicit one.
        deployment: The deployment's endpoint (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``) with the
            default model; model IDs are asked of it, with ``deployment_retry``.
        deployment_retry: The retry policy of calls on the deployment's endpoint.
        read_timeout_seconds: The most seconds between two chunks of a stream that has begun
            (the ``openai`` client's timeout).
        sleep: Waits the backoffs (tests inject one that does not wait).
        jitter: Returns a random number in [0, 1) for the backoffs.
        http_client: Makes each endpoint's HTTP client (traced when tracing is on).
        metrics: Where each model call's duration and tokens are recorded (the runner records
            them, :func:`services.agent.runner.run_agent`); None: nowhere.
    """

    routes: Mapping[str, Route]
    deployment: RouteEndpoint
    deployment_retry: RetryPolicy = field(default_factory=RetryPolicy)
    read_timeout_seconds: float = 120.0
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    http_client: Callable[[], httpx.AsyncClient | None] = model_http_client
    metrics: ModelMetrics | None = None

    def __post_init__(self) -> None:
        self._deployment = self._endpoint(self.deployment)
        self._routes = {
            name: ResolvedRoute(name, tuple(self._endpoint(e) for e in route.endpoints), route.retry)
            for name, route in self.routes.items()
        }
        if DEFAULT_ROUTE not in self._routes:
            self._routes[DEFAULT_ROUTE] = ResolvedRoute(
                DEFAULT_ROUTE, (self._deployment,), self.deployment_retry
            )

    def _endpoint(self, endpoint: RouteEndpoint) -> Endpoint:
        client = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.key(),
            timeout=httpx.Timeout(self.read_timeout_seconds, connect=endpoint.timeout_seconds),
            max_retries=0,
            http_client=self.http_client(),
        )
        return Endpoint(endpoint.label, endpoint.model, endpoint.timeout_seconds, client)

    @property
    def names(self) -> frozenset[str]:
        """The routes agents may name, ``default`` included."""
        return frozenset(self._routes)

    def default_model(self, fallback: str) -> str:
        """Returns what an agent that names no model asks, by default.

        That is ``routes/default`` when the operator configured that route, else
        ``fallback`` (the deployment's default model ID).
        """
        return f"{ROUTE_PREFIX}{DEFAULT_ROUTE}" if DEFAULT_ROUTE in self.routes else fallback

    def resolve(self, model: str) -> ResolvedRoute:
        """Returns the endpoints a call for ``model`` (a model ID or ``routes/{route}``) tries.

        Raises:
            RouteUnavailable: ``model`` names a route that is not configured (any more).
        """
        route = route_of(model)
        if route is None:
            endpoint = Endpoint(model, model, self._deployment.timeout_seconds, self._deployment.client)
            return ResolvedRoute("", (endpoint,), self.deployment_retry)
        resolved = self._routes.get(route)
        if resolved is None:
            raise RouteUnavailable(route, [], f"no model route named {route!r} is configured")
        return resolved

    def endpoint_url(self, model: str) -> httpx.URL:
        """Returns the base URL of the first endpoint a call for ``model`` goes to (for its span)."""
        try:
            return self.resolve(model).endpoints[0].client.base_url
        except RouteUnavailable:
            return self._deployment.client.base_url

    async def open(self, request: Mapping[str, Any]) -> OpenedStream:
        """Opens a streamed Chat Completions call on the first endpoint that answers it.

        Args:
            request: ``chat.completions.create`` arguments; its ``model`` is a model ID or
                ``routes/{route}``, replaced by each endpoint's model.

        Returns:
            The stream, from its first chunk, with the route, endpoint and model that answered.

        Raises:
            RouteUnavailable: Every attempt on every endpoint failed, or the route is unknown.
        """
        route = self.resolve(str(request["model"]))
        failed: list[Attempt] = []
        for endpoint in route.endpoints:
            for attempt in range(1, route.retry.attempts + 1):
                if attempt > 1:
                    await self.sleep(route.retry.backoff(attempt - 1, self.jitter))
                stream = None
                try:
                    async with asyncio.timeout(endpoint.timeout_seconds):
                        stream = await endpoint.client.chat.completions.create(
                            **{**request, "model": endpoint.model},
                            stream=True,
                            stream_options={"include_usage": True},
                        )
                        chunks = aiter(stream)
                        first = await anext(chunks, None)
                except (TimeoutError, openai.APIError) as error:
                    if stream is not None:
                        await stream.close()
                    what, retry = _failure(error, endpoint.timeout_seconds)
                    failed.append(Attempt(endpoint.name, what))
                    if not retry:
                        break
                    continue
                return OpenedStream(route.name, endpoint.name, endpoint.model, len(failed) + 1, first, chunks)
        raise RouteUnavailable(route.name, failed)

    async def close(self) -> None:
        """Closes every endpoint's client."""
        clients = {id(e.client): e.client for r in self._routes.values() for e in r.endpoints}
        clients[id(self._deployment.client)] = self._deployment.client
        await asyncio.gather(*(c.close() for c in clients.values()))
