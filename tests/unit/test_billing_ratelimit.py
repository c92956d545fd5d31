"""The rate limit service's counting: fixed windows in memory and in Redis, the rate cache, the answers.

Every clock is injected: a window is the second the test's clock says, never the wall's.
The Redis tests use the real Redis at 127.0.0.1:6379 (fail under CI=true when it is down).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from envoy_api.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as descriptors_pb2
from envoy_api.envoy.service.ratelimit.v3 import rls_pb2

from services.billing.counters import KEY_PREFIX, MemoryCounters, RedisCounters, WindowCounters
from services.billing.ratelimit import DOMAIN, TENANT_KEY, PlanRates, RateLimitServicer
from services.cli.stack import free_port
from services.kit.errors import InvalidArgument, Unavailable
from tests.conftest import redis_or_skip

OK = rls_pb2.RateLimitResponse.OK
OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT
#: A Unix time a quarter into its second.
T0 = 1_900_000_000.25


class Clock:
    """A clock that moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tenant_request(*tenants: str, domain: str = DOMAIN, hits: int = 0) -> rls_pb2.RateLimitRequest:
    return rls_pb2.RateLimitRequest(
        domain=domain,
        hits_addend=hits,
        descriptors=[
            descriptors_pb2.RateLimitDescriptor(
                entries=[descriptors_pb2.RateLimitDescriptor.Entry(key=TENANT_KEY, value=t)]
            )
            for t in tenants
        ],
    )


@pytest.fixture
async def redis_counters() -> AsyncIterator[RedisCounters]:
    counters = RedisCounters(redis_or_skip())
    yield counters
    await counters.close()


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[WindowCounters]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    counters = RedisCounters(redis_or_skip())
    yield counters
    await counters.close()


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


async def test_a_count_grows_in_its_window_and_starts_again_in_the_next(counters: WindowCounters) -> None:
    key, other = unique("a"), unique("b")
    assert [await counters.add(key, 100, 1, 1) for _ in range(3)] == [1, 2, 3]
    assert await counters.add(other, 100, 1, 2) == 2
    assert await counters.add(key, 101, 1, 1) == 1
    assert await counters.add(other, 101, 1, 5) == 5


async def test_memory_keeps_only_the_newest_window() -> None:
    counters = MemoryCounters()
    await counters.add("a", 100, 1, 4)
    await counters.add("b", 101, 1, 1)
    # A clock that went back counts in the newest window; the old one is gone.
    assert await counters.add("a", 100, 1, 1) == 1
    assert await counters.add("b", 99, 1, 1) == 2


async def test_redis_sets_the_count_and_its_expiry_together(redis_counters: RedisCounters) -> None:
    key = unique("expiry")
    await redis_counters.add(key, 200, 1, 1)
    raw = redis_counters._redis  # the same server, to read what was written
    assert await raw.get(f"{KEY_PREFIX}{key}:200") == b"1"
    assert 0 < await raw.ttl(f"{KEY_PREFIX}{key}:200") <= 2


async def test_two_redis_clients_share_one_count(redis_counters: RedisCounters) -> None:
    key = unique("shared")
    second = RedisCounters(redis_or_skip())
    try:
        assert await redis_counters.add(key, 300, 1, 1) == 1
        assert await second.add(key, 300, 1, 1) == 2
        assert await redis_counters.add(key, 300, 1, 1) == 3
    finally:
        await second.close()


async def test_plan_rates_are_read_again_after_their_ttl() -> None:
    reads: list[str] = []
    rate = {"t": 5}

    async def rate_of(tenant: str) -> int:
        reads.append(tenant)
        return rate[tenant]

    clock = Clock(0.0)
    rates = PlanRates(rate_of, ttl=5.0, clock=clock)
    assert await rates.of("t") == 5
    rate["t"] = 9
    clock.now = 4.9
    assert await rates.of("t") == 5
    clock.now = 5.0
    assert await rates.of("t") == 9
    assert reads == ["t", "t"]


def servicer(rates: dict[str, int], counters: WindowCounters, clock: Clock) -> RateLimitServicer:
    async def rate_of(tenant: str) -> int:
        return rates[tenant]

    return RateLimitServicer(PlanRates(rate_of), counters, clock)


async def test_requests_over_the_rate_in_one_second_are_over_limit(counters: WindowCounters) -> None:
    tenant = unique("t")
    clock = Clock(T0)
    limiter = servicer({tenant: 3}, counters, clock)
    answers = [await limiter.ShouldRateLimit(tenant_request(tenant), None) for _ in range(5)]  # type: ignore[arg-type]
    assert [a.overall_code for a in answers] == [OK, OK, OK, OVER_LIMIT, OVER_LIMIT]
    assert [a.statuses[0].limit_remaining for a in answers] == [2, 1, 0, 0, 0]
    last = answers[-1]
    assert last.statuses[0].current_limit.requests_per_unit == 3
    assert last.statuses[0].current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.SECOND
    assert last.statuses[0].duration_until_reset.ToSeconds() == 1
    assert [(h.key, h.value) for h in last.response_headers_to_add] == [("retry-after", "1")]
    assert list(answers[0].response_headers_to_add) == []
    # The next second counts from zero.
    clock.now = T0 + 1
    again = await limiter.ShouldRateLimit(tenant_request(tenant), None)  # type: ignore[arg-type]
    assert again.overall_code == OK
    assert again.statuses[0].limit_remaining == 2


async def test_tenants_do_not_share_counts(counters: WindowCounters) -> None:
    a, b = unique("a"), unique("b")
    limiter = servicer({a: 1, b: 1}, counters, Clock(T0))
    assert (await limiter.ShouldRateLimit(tenant_request(a), None)).overall_code == OK  # type: ignore[arg-type]
    assert (await limiter.ShouldRateLimit(tenant_request(a), None)).overall_code == OVER_LIMIT  # type: ignore[arg-type]
    assert (await limiter.ShouldRateLimit(tenant_request(b), None)).overall_code == OK  # type: ignore[arg-type]


async def test_hits_addend_counts_that_many() -> None:
    limiter = servicer({"t": 4}, MemoryCounters(), Clock(T0))
    first = await limiter.ShouldRateLimit(tenant_request("t", hits=3), None)  # type: ignore[arg-type]
    assert (first.overall_code, first.statuses[0].limit_remaining) == (OK, 1)
    second = await limiter.ShouldRateLimit(tenant_request("t", hits=2), None)  # type: ignore[arg-type]
    assert second.overall_code == OVER_LIMIT


async def test_unlimited_plans_other_domains_and_other_descriptors_are_not_limited() -> None:
    counters = MemoryCounters()
    limiter = servicer({"free": 0, "t": 1}, counters, Clock(T0))
    for _ in range(3):
        unlimited = await limiter.ShouldRateLimit(tenant_request("free"), None)  # type: ignore[arg-type]
        assert unlimited.overall_code == OK
        assert not unlimited.statuses[0].HasField("current_limit")
        foreign = await limiter.ShouldRateLimit(tenant_request("t", domain="other"), None)  # type: ignore[arg-type]
        assert foreign.overall_code == OK
    other = rls_pb2.RateLimitRequest(
        domain=DOMAIN,
        descriptors=[
            descriptors_pb2.RateLimitDescriptor(
                entries=[descriptors_pb2.RateLimitDescriptor.Entry(key="remote_address", value="10.0.0.1")]
            )
        ],
    )
    assert (await limiter.ShouldRateLimit(other, None)).overall_code == OK  # type: ignore[arg-type]
    # None of them counted for "t".
    assert (await limiter.ShouldRateLimit(tenant_request("t"), None)).overall_code == OK  # type: ignore[arg-type]


async def test_a_descriptor_that_is_not_a_tenant_id_is_refused() -> None:
    limiter = servicer({}, MemoryCounters(), Clock(T0))
    with pytest.raises(InvalidArgument):
        await limiter.ShouldRateLimit(tenant_request("Not:A:Tenant"), None)  # type: ignore[arg-type]


async def test_unreachable_redis_is_unavailable_not_an_internal_error() -> None:
    counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    try:
        with pytest.raises(Unavailable) as raised:
            await counters.add("t", 100, 1, 1)
    finally:
        await counters.close()
    assert raised.value.reason == "RATE_COUNTERS_UNAVAILABLE"
