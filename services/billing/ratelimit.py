"""The rate limit service the gateway asks: each tenant's plan rate, for every gateway replica together.

It speaks Envoy's own protocol (``envoy.service.ratelimit.v3.RateLimitService``,
``ShouldRateLimit``, https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/ratelimit/v3/rls.proto),
so Envoy's ``ratelimit`` filter asks it as it would ask Envoy's reference service.
The billing service serves it because billing owns the plans that set the rate.

Algorithm: a fixed window of one second per tenant, as Envoy's reference service
counts (``envoyproxy/ratelimit``): a request adds one to the tenant's count in the
current second and is over the limit once the count passes the plan's
``request_rate``. Fixed windows take one atomic Redis transaction per request and
name an exact reset time (``x-ratelimit-reset``); their known cost is that up to
twice the rate can pass across the edge of two windows, which the gateway's local
bucket (a token bucket per Envoy process) bounds further. A sliding window or GCRA
would smooth that edge at the cost of a Lua script and of a reset time that is only
an estimate.

The descriptor is the one the gateway renders (:mod:`gateway.envoy.render`): domain
``orchestrall``, one entry ``tenant`` with the verified token's tenant. Other
domains and descriptors are not ours to limit and are answered OK without a limit.

Callers: only the gateway, on its own mesh identity (``services.kit.policy``); the
RPC is internal, so the gateway refuses it from clients (404).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import grpc
from envoy_api.envoy.config.core.v3 import base_pb2
from envoy_api.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as descriptors_pb2
from envoy_api.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf.duration_pb2 import Duration

from services.billing.counters import WindowCounters
from services.kit.names import validate_id

#: The domain and descriptor key the gateway sends (gateway.envoy.render.RATE_LIMIT_DOMAIN and
#: RATE_LIMIT_TENANT_KEY; the gateway's renderer does not import the service, nor it the renderer).
DOMAIN = "orchestrall"
TENANT_KEY = "tenant"
#: Length of a counting window, in seconds (a plan's request_rate is per second).
WINDOW_SECONDS = 1
#: Seconds a tenant's rate is kept before its plan is read again (:class:`PlanRates`).
RATE_CACHE_SECONDS = 5.0
#: Tenants whose rates are kept at most; past that the cache starts empty again.
RATE_CACHE_ENTRIES = 100_000

_OK = rls_pb2.RateLimitResponse.OK
_OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT


class PlanRates:
    """Each tenant's plan rate (requests per second, 0 for unlimited), cached.

    Invalidation: an entry is read from the plan again :data:`RATE_CACHE_SECONDS` after it
    was read, so a change of a tenant's plan (or of a plan's rate) reaches every replica's
    limit within that time; nothing else changes a rate. The cache holds
    :data:`RATE_CACHE_ENTRIES` tenants at most and is emptied when it is full.

    Args:
        rate_of: Returns a tenant's plan rate (its plan's, :func:`services.billing.plans.edge_rate_of`).
        ttl: Seconds an entry is used.
        clock: Monotonic seconds (tests move it).
    """

    def __init__(
        self,
        rate_of: Callable[[str], Awaitable[int]],
        ttl: float = RATE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate_of = rate_of
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, int]] = {}

    async def of(self, tenant: str) -> int:
        """Returns ``tenant``'s plan rate, from the cache while it is fresh."""
        now = self._clock()
        entry = self._entries.get(tenant)
        if entry is not None and entry[0] > now:
            return entry[1]
        rate = await self._rate_of(tenant)
        if len(self._entries) >= RATE_CACHE_ENTRIES:
            self._entries.clear()
        self._entries[tenant] = (now + self._ttl, rate)
        return rate


def _tenant_of(descriptor: descriptors_pb2.RateLimitDescriptor) -> str | None:
    """Returns the tenant a descriptor counts, or None when it is not the gateway's tenant descriptor."""
    entries = descriptor.entries
    if len(entries) != 1 or entries[0].key != TENANT_KEY:
        return None
    return entries[0].value


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):
    """``ShouldRateLimit``: counts the request for its tenant and says whether it is over the plan's rate.

    Args:
        rates: Each tenant's plan rate.
        counters: Where the counts are kept (Redis, or this process's memory).
        clock: Unix seconds; the window is the whole second it is in (tests move it).
    """

    def __init__(
        self, rates: PlanRates, counters: WindowCounters, clock: Callable[[], float] = time.time
    ) -> None:
        self._rates = rates
        self._counters = counters
        self._clock = clock

    async def ShouldRateLimit(  # noqa: N802 (the protocol's name)
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> rls_pb2.RateLimitResponse:
        """Counts ``hits_addend`` (1 when unset) for each tenant descriptor in the current window.

        Returns:
            OVER_LIMIT (overall) when any descriptor's count passed its tenant's rate, with a
            ``Retry-After`` header of the seconds until the window ends; OK otherwise. Each
            descriptor's status has the limit, what remains of it and the whole seconds until the
            window resets, rounded up (Envoy's ``x-ratelimit-*`` headers). Statuses are in the
            descriptors' order.

        Raises:
            InvalidArgument: A tenant descriptor's value is not a tenant ID (Envoy then lets the
                request through: failure_mode_deny is off).
            Unavailable: ``RATE_COUNTERS_UNAVAILABLE``, Redis could not count (the same).
        """
        now = self._clock()
        window = math.floor(now / WINDOW_SECONDS) * WINDOW_SECONDS
        until_reset = window + WINDOW_SECONDS - now
        hits = request.hits_addend or 1
        ours = request.domain == DOMAIN
        statuses = await asyncio.gather(
            *(
                self._status(_tenant_of(d) if ours else None, window, until_reset, hits)
                for d in request.descriptors
            )
        )
        over = any(s.code == _OVER_LIMIT for s in statuses)
        response = rls_pb2.RateLimitResponse(overall_code=_OVER_LIMIT if over else _OK, statuses=statuses)
        if over:
            response.response_headers_to_add.append(
                base_pb2.HeaderValue(key="retry-after", value=str(max(1, math.ceil(until_reset))))
            )
        return response

    async def _status(
        self, tenant: str | None, window: int, until_reset: float, hits: int
    ) -> rls_pb2.RateLimitResponse.DescriptorStatus:
        if tenant is None:
            return rls_pb2.RateLimitResponse.DescriptorStatus(code=_OK)
        validate_id(tenant, "descriptors.entries.value")
        rate = await self._rates.of(tenant)
        if rate == 0:  # unlimited
            return rls_pb2.RateLimitResponse.DescriptorStatus(code=_OK)
        count = await self._counters.add(f"tenant:{tenant}", window, WINDOW_SECONDS, hits)
        # Whole seconds, rounded up, as the reference service sends it: Envoy's x-ratelimit-reset
        # header takes the seconds and drops the rest.
        reset = Duration(seconds=max(1, math.ceil(until_reset)))
        return rls_pb2.RateLimitResponse.DescriptorStatus(
            code=_OVER_LIMIT if count > rate else _OK,
            current_limit=rls_pb2.RateLimitResponse.RateLimit(
                requests_per_unit=rate, unit=rls_pb2.RateLimitResponse.RateLimit.SECOND
            ),
            limit_remaining=max(0, rate - count),
            duration_until_reset=reset,
        )
