"""A plan's request rate at the edge, through real Envoy processes and real HTTP.

In this event loop: the auth service (tokens, the route the tests call) and three
replicas of the billing service's rate limit service, two counting in the real Redis
and one in its memory. In front: four Envoy processes rendered by
:func:`gateway.envoy.render.render`:

- ``left`` and ``right`` ask one Redis replica each, so only Redis can make their
  counts one;
- ``alone`` asks the memory replica;
- ``orphan`` asks a port where nothing listens (the limit service is down).

The limit services' clock is held still, so every request of the module falls in one
window and no test depends on when it runs; each test has its own tenants, whose rate
the test sets (``RATES``). The local buckets of the first three are far above the
rates, so only the limit service refuses there; ``orphan``'s holds three tokens and
gains one a minute, as in test_edge.py.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from envoy_api.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from gateway.envoy.render import render
from gateway.envoy.settings import TokenBucket
from orchestrall.auth.v1 import auth_service_pb2 as auth_pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as auth_grpc
from orchestrall.auth.v1 import resources_pb2 as auth_res
from services.auth.server import AuthSettings
from services.auth.server import build as build_auth
from services.billing.counters import MemoryCounters, RedisCounters, WindowCounters
from services.billing.server import build as build_billing
from services.cli.stack import ROOT, StackConfig, free_port
from services.kit import migrate, mtls
from services.kit.server import RunningServer, start
from tests.conftest import redis_or_skip

pytestmark = pytest.mark.mesh

#: Tenant -> its plan's rate, set by each test before the tenant's first request.
RATES: dict[str, int] = {}
#: The limit services' time: held still (Unix seconds, a quarter into its second).
NOW = 1_900_000_000.25
WIDE = TokenBucket(burst=10_000, refill=10_000)
NARROW = TokenBucket(burst=3, refill=1, interval_seconds=60)


async def rate_of(tenant: str) -> int:
    return RATES[tenant]


@dataclass(frozen=True)
class Edges:
    """The gateways by name (their base URLs), and how to make tenants."""

    urls: dict[str, str]
    auth: RunningServer
    tls_dir: Path

    async def new_tenant(self, rate: int) -> tuple[str, dict[str, str]]:
        """Signs up a tenant straight at auth, on a plan of ``rate``; returns (id, bearer header)."""
        tenant_id = f"plan-{secrets.token_hex(4)}"
        RATES[tenant_id] = rate
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.auth.port}",
            mtls.channel_credentials(mtls.TlsFiles.of(self.tls_dir, "gateway")),
            options=[("grpc.ssl_target_name_override", "auth")],
        ) as channel:
            stub = auth_grpc.AuthServiceStub(channel)
            created = await stub.CreateTenant(
                auth_pb.CreateTenantRequest(tenant_id=tenant_id, tenant=auth_res.Tenant(display_name="Plan"))
            )
            token = await stub.IssueToken(
                auth_pb.IssueTokenRequest(
                    grant_type="client_credentials", client_secret=created.api_key_secret
                )
            )
        return tenant_id, {"authorization": f"Bearer {token.access_token}"}


async def _billing(config: StackConfig, tls_dir: Path, counters: WindowCounters) -> RunningServer:
    update = {"tls_dir": tls_dir, "listen": "127.0.0.1:0", "metrics_listen": None}
    settings = config.settings("billing").model_copy(update=update)
    service, mesh_settings = await build_billing(
        settings, counters=counters, request_rate_of=rate_of, rate_clock=lambda: NOW
    )
    return await start(service, mesh_settings)


def _envoy(
    state: Path, name: str, config: StackConfig, tls_dir: Path, ports: tuple[int, int], bucket: TokenBucket
) -> tuple[str, subprocess.Popen[bytes]]:
    """Starts an Envoy in front of auth (``ports[0]``) asking the limit service at ``ports[1]``."""
    port = free_port()
    path = state / f"{name}.yaml"
    path.write_text(
        render(
            listen_port=port,
            admin_port=free_port(),
            upstreams={"auth": ("127.0.0.1", ports[0])},
            tls_dir=tls_dir,
            descriptor_set=ROOT / "gen" / "orchestrall.binpb",
            issuer=config.gateway_url,
            audience="orchestrall",
            trust_domain="orchestrall.local",
            namespace="orchestrall",
            tenant_rate_limit=bucket,
            anonymous_rate_limit=WIDE,
            cors_origins=[],
            rate_limit_upstream=("127.0.0.1", ports[1]),
            # A busy machine must not turn a slow answer into an uncounted request.
            rate_limit_timeout_ms=5_000,
        )
    )
    with open(state / f"{name}.log", "wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "envoy"), "-c", str(path),
                "--log-level", "warn", "--use-dynamic-base-id", "--drain-time-s", "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return f"http://127.0.0.1:{port}", process


@pytest.fixture(scope="module")
async def edges(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> AsyncIterator[Edges]:
    redis_url = redis_or_skip()
    state = tmp_path_factory.mktemp("plan-rate")
    config = StackConfig.ephemeral(state)
    auth_settings = AuthSettings(**config.settings("auth").model_dump(), key_publish_delay_seconds=0)
    auth_settings = auth_settings.model_copy(update={"tls_dir": tls_dir})
    migrate.upgrade(auth_settings, "auth")
    migrate.upgrade(config.settings("billing"), "billing")
    auth = await start(*(await build_auth(auth_settings)))
    # Redis keys outlive the held clock's window by Redis's own clock: keep them for the module.
    limits = [
        await _billing(config, tls_dir, RedisCounters(redis_url, keep_seconds=600)),
        await _billing(config, tls_dir, RedisCounters(redis_url, keep_seconds=600)),
        await _billing(config, tls_dir, MemoryCounters()),
    ]
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for name, limit_port, bucket in (
            ("left", limits[0].port, WIDE),
            ("right", limits[1].port, WIDE),
            ("alone", limits[2].port, WIDE),
            ("orphan", free_port(), NARROW),
        ):
            url, process = _envoy(state, name, config, tls_dir, (auth.port, limit_port), bucket)
            processes.append(process)
            urls[name] = url
        async with httpx.AsyncClient(timeout=5) as client:
            for (name, url), process in zip(urls.items(), processes, strict=True):
                deadline = time.monotonic() + 20
                while True:
                    assert process.poll() is None, (state / f"{name}.log").read_text()[-2000:]
                    try:
                        if (await client.get(f"{url}/.well-known/openid-configuration")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, f"envoy {name} did not start"
                    await asyncio.sleep(0.1)
        yield Edges(urls, auth, tls_dir)
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for server in limits:
            await server.stop(0)
        await auth.stop(0)


async def _get(client: httpx.AsyncClient, url: str, tenant: str, headers: dict[str, str]) -> httpx.Response:
    return await client.get(f"{url}/v1/tenants/{tenant}", headers=headers)


async def test_two_gateways_share_one_count_through_redis(edges: Edges) -> None:
    tenant, headers = await edges.new_tenant(rate=4)
    left, right = edges.urls["left"], edges.urls["right"]
    async with httpx.AsyncClient(timeout=10) as client:
        answers = [await _get(client, url, tenant, headers) for url in (left, right) * 3]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["3", "2", "1", "0", "0", "0"]
    # draft 03: the limit, then the quota policy (4 requests in a window of 1 second).
    assert {a.headers["x-ratelimit-limit"] for a in answers} == {"4, 4;w=1"}
    refused = answers[-1]
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-reset"] == "1"
    body = refused.json()
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert [d["reason"] for d in body["details"]] == ["RATE_LIMITED"]
    assert not [h for h in refused.headers if h.startswith("grpc-")]


async def test_native_grpc_counts_with_rest_and_is_refused_with_resource_exhausted(edges: Edges) -> None:
    tenant, headers = await edges.new_tenant(rate=1)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await _get(client, edges.urls["left"], tenant, headers)).status_code == 200
    async with grpc.aio.insecure_channel(edges.urls["right"].removeprefix("http://")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await auth_grpc.AuthServiceStub(channel).GetTenant(
                auth_pb.GetTenantRequest(name=f"tenants/{tenant}"), metadata=tuple(headers.items())
            )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_tenants_do_not_share_counts(edges: Edges) -> None:
    busy, busy_headers = await edges.new_tenant(rate=2)
    calm, calm_headers = await edges.new_tenant(rate=2)
    url = edges.urls["left"]
    async with httpx.AsyncClient(timeout=10) as client:
        busy_codes = [(await _get(client, url, busy, busy_headers)).status_code for _ in range(3)]
        calm_codes = [(await _get(client, url, calm, calm_headers)).status_code for _ in range(2)]
    assert busy_codes == [200, 200, 429]
    assert calm_codes == [200, 200]


async def test_one_gateway_counts_in_the_limit_service_memory(edges: Edges) -> None:
    tenant, headers = await edges.new_tenant(rate=3)
    url = edges.urls["alone"]
    async with httpx.AsyncClient(timeout=10) as client:
        codes = [(await _get(client, url, tenant, headers)).status_code for _ in range(5)]
        # The memory replica's count is its own: the Redis replicas start this tenant at zero.
        elsewhere = await _get(client, edges.urls["left"], tenant, headers)
    assert codes == [200, 200, 200, 429, 429]
    assert elsewhere.status_code == 200
    assert elsewhere.headers["x-ratelimit-remaining"] == "2"


async def test_with_the_limit_service_down_traffic_flows_and_the_local_bucket_limits(edges: Edges) -> None:
    tenant, headers = await edges.new_tenant(rate=1)
    url = edges.urls["orphan"]
    async with httpx.AsyncClient(timeout=10) as client:
        answers = [await _get(client, url, tenant, headers) for _ in range(4)]
    # The plan's rate (1) would refuse the second; the local bucket (3) refuses the fourth.
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert "x-ratelimit-limit" not in answers[0].headers
    assert answers[-1].headers["retry-after"] == "60"


async def test_anonymous_requests_are_not_counted(edges: Edges) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{edges.urls['left']}/.well-known/openid-configuration")
    assert answer.status_code == 200
    assert "x-ratelimit-limit" not in answer.headers


async def test_clients_cannot_call_the_limit_service_through_the_gateway(edges: Edges) -> None:

    tenant, headers = await edges.new_tenant(rate=5)
    async with grpc.aio.insecure_channel(edges.urls["left"].removeprefix("http://")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(
                rls_pb2.RateLimitRequest(domain="orchestrall"), metadata=tuple(headers.items())
            )
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
