"""Envoy's ShouldRateLimit on the billing service over gRPC (mTLS): who may ask, and what it answers.

The billing service runs in this event loop with its rate limit clock held still, so
every call of a test falls in one window.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy_api.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as descriptors_pb2
from envoy_api.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from services.billing.counters import RedisCounters
from services.billing.ratelimit import DOMAIN, TENANT_KEY
from services.billing.server import build
from services.cli.stack import StackConfig
from services.kit import migrate, mtls
from services.kit.server import RunningServer, start
from tests.conftest import redis_or_skip

RATE = 2
T0 = 1_900_000_000.5


@pytest.fixture(scope="module")
async def billing(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> AsyncIterator[RunningServer]:
    config = StackConfig.ephemeral(tmp_path_factory.mktemp("billing-rls"))
    settings = config.settings("billing").model_copy(update={"tls_dir": tls_dir})
    migrate.upgrade(settings, "billing")

    async def rate_of(_tenant: str) -> int:
        return RATE

    service, mesh_settings = await build(
        settings,
        counters=RedisCounters(redis_or_skip(), keep_seconds=300),
        request_rate_of=rate_of,
        rate_clock=lambda: T0,
    )
    server = await start(service, mesh_settings)
    yield server
    await server.stop(0)


def channel(server: RunningServer, tls_dir: Path, identity: str) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        f"127.0.0.1:{server.port}",
        mtls.channel_credentials(mtls.TlsFiles.of(tls_dir, identity)),
        options=[("grpc.ssl_target_name_override", "billing")],
    )


def request(tenant: str) -> rls_pb2.RateLimitRequest:
    entry = descriptors_pb2.RateLimitDescriptor.Entry(key=TENANT_KEY, value=tenant)
    return rls_pb2.RateLimitRequest(
        domain=DOMAIN, descriptors=[descriptors_pb2.RateLimitDescriptor(entries=[entry])]
    )


async def test_the_gateway_is_answered_ok_until_the_plan_rate_then_over_limit(
    billing: RunningServer, tls_dir: Path
) -> None:
    tenant = f"rls-{secrets.token_hex(4)}"
    async with channel(billing, tls_dir, "gateway") as ch:
        stub = rls_pb2_grpc.RateLimitServiceStub(ch)
        answers = [await stub.ShouldRateLimit(request(tenant), timeout=5) for _ in range(RATE + 1)]
    codes = [a.overall_code for a in answers]
    assert codes == [rls_pb2.RateLimitResponse.OK] * RATE + [rls_pb2.RateLimitResponse.OVER_LIMIT]
    assert answers[-1].statuses[0].current_limit.requests_per_unit == RATE
    assert answers[-1].statuses[0].duration_until_reset.ToMilliseconds() == 1000
    assert [(h.key, h.value) for h in answers[-1].response_headers_to_add] == [("retry-after", "1")]


@pytest.mark.parametrize("identity", ["agent", "cli"])
async def test_no_other_mesh_identity_may_ask(billing: RunningServer, tls_dir: Path, identity: str) -> None:
    async with channel(billing, tls_dir, identity) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rls_pb2_grpc.RateLimitServiceStub(ch).ShouldRateLimit(request("acme"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_descriptor_that_is_no_tenant_id_is_invalid(billing: RunningServer, tls_dir: Path) -> None:
    async with channel(billing, tls_dir, "gateway") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rls_pb2_grpc.RateLimitServiceStub(ch).ShouldRateLimit(request("Acme/../x"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
