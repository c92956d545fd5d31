"""Edge protection at the gateway: per-tenant and per-address rate limits, CORS, size limits.

Runs the real Envoy, rendered with tiny limits by :func:`gateway.envoy.render.render`,
in front of the real auth service (in this event loop, SQLite, mTLS). Buckets hold
three tokens and gain one a minute, so timing never matters: a fourth request in
the same test is always refused. Each test uses its own tenants; only
``test_anonymous_credential_calls_are_limited_per_address`` spends the address
bucket of 127.0.0.1 (tenants are created straight at auth, not through Envoy).
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

from gateway.envoy.render import TENANT_HEADER, render
from gateway.envoy.settings import TokenBucket
from orchestrall.auth.v1 import auth_service_pb2 as auth_pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as auth_grpc
from orchestrall.auth.v1 import resources_pb2 as auth_res
from services.auth.server import AuthSettings, build
from services.cli.stack import ROOT, StackConfig, free_port
from services.kit import migrate, mtls
from services.kit.server import RunningServer, start
from tests.attacks import Forger
from tests.conftest import current_signing_key

pytestmark = pytest.mark.mesh

BUCKET = TokenBucket(burst=3, refill=1, interval_seconds=60)
CONSOLE = "http://localhost:5173"
MAX_BODY = 64 * 1024
# Envoy's leeway on exp, short so that a token's expiry is quick to wait for.
CLOCK_SKEW_SECONDS = 1


@dataclass(frozen=True)
class Edge:
    """Envoy in front of auth."""

    url: str
    grpc_target: str
    admin_url: str
    auth: RunningServer
    tls_dir: Path
    forger: Forger

    async def counter(self, name: str) -> int:
        """One of Envoy's counters, from its admin interface."""
        async with httpx.AsyncClient(base_url=self.admin_url, timeout=5) as admin:
            text = (await admin.get("/stats", params={"filter": f"^{name}$"})).text
        values = [int(line.rsplit(":", 1)[1]) for line in text.splitlines() if line.startswith(name + ":")]
        assert len(values) == 1, text
        return values[0]

    async def new_tenant(self) -> tuple[str, str]:
        """Signs up a tenant straight at auth (not through the edge); returns (id, token)."""
        tenant_id = f"edge-{secrets.token_hex(4)}"
        files = mtls.TlsFiles.of(self.tls_dir, "gateway")
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{self.auth.port}",
            mtls.channel_credentials(files),
            options=[("grpc.ssl_target_name_override", "auth")],
        ) as channel:
            stub = auth_grpc.AuthServiceStub(channel)
            created = await stub.CreateTenant(
                auth_pb.CreateTenantRequest(tenant_id=tenant_id, tenant=auth_res.Tenant(display_name="Edge"))
            )
            token = await stub.IssueToken(
                auth_pb.IssueTokenRequest(
                    grant_type="client_credentials", client_secret=created.api_key_secret
                )
            )
        return tenant_id, token.access_token


@pytest.fixture(scope="module")
async def edge(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> AsyncIterator[Edge]:
    state = tmp_path_factory.mktemp("edge")
    config = StackConfig.ephemeral(state)
    settings = AuthSettings(
        **config.settings("auth").model_dump(),
        key_publish_delay_seconds=0,
        oauth_listen=f"127.0.0.1:{config.oauth_port}",
    )
    settings = settings.model_copy(update={"tls_dir": tls_dir})
    migrate.upgrade(settings, "auth")
    service, mesh_settings = await build(settings)
    auth = await start(service, mesh_settings)
    key = current_signing_key(settings)
    forger = Forger(key.private_pem, key.kid, settings.issuer, settings.audience)
    admin_port = free_port()
    envoy_yaml = state / "envoy.yaml"
    envoy_yaml.write_text(
        render(
            listen_port=config.http_port,
            admin_port=admin_port,
            upstreams={"auth": ("127.0.0.1", auth.port)},
            oauth_upstream=("127.0.0.1", config.oauth_port),
            tls_dir=tls_dir,
            descriptor_set=ROOT / "gen" / "orchestrall.binpb",
            issuer=config.gateway_url,
            audience="orchestrall",
            trust_domain="orchestrall.local",
            namespace="orchestrall",
            tenant_rate_limit=BUCKET,
            anonymous_rate_limit=BUCKET,
            cors_origins=[CONSOLE],
            max_request_bytes=MAX_BODY,
            jwt_clock_skew_seconds=CLOCK_SKEW_SECONDS,
        )
    )
    log = state / "envoy.log"
    with open(log, "wb") as out:
        envoy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "envoy"), "-c", str(envoy_yaml),
                "--log-level", "warn", "--use-dynamic-base-id", "--drain-time-s", "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=config.gateway_url, timeout=5) as client:
            deadline = time.monotonic() + 15
            while True:
                assert envoy.poll() is None, log.read_text()[-2000:]
                try:
                    if (await client.get("/.well-known/openid-configuration")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "envoy did not start"
                await asyncio.sleep(0.1)
        yield Edge(
            config.gateway_url,
            f"127.0.0.1:{config.http_port}",
            f"http://127.0.0.1:{admin_port}",
            auth,
            tls_dir,
            forger,
        )
    finally:
        envoy.terminate()
        try:
            envoy.wait(10)
        except subprocess.TimeoutExpired:
            envoy.kill()
            envoy.wait()
        await auth.stop(0)


@pytest.fixture
async def http(edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _statuses(http: httpx.AsyncClient, tenant: str, token: str, n: int, **headers: str) -> list[int]:
    return [
        (await http.get(f"/v1/tenants/{tenant}", headers={**bearer(token), **headers})).status_code
        for _ in range(n)
    ]


async def test_a_tenant_over_its_limit_gets_429_and_others_are_served(
    edge: Edge, http: httpx.AsyncClient
) -> None:
    busy, busy_token = await edge.new_tenant()
    calm, calm_token = await edge.new_tenant()
    assert await _statuses(http, busy, busy_token, 3) == [200, 200, 200]

    refused = await http.get(f"/v1/tenants/{busy}", headers=bearer(busy_token))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert _gateway_reason(refused) == "RATE_LIMITED"
    assert not [h for h in refused.headers if h.startswith("grpc-")]

    # Same second, another tenant: its own bucket.
    assert await _statuses(http, calm, calm_token, 1) == [200]

    # Native gRPC shares the tenant's bucket and is refused with RESOURCE_EXHAUSTED.
    async with grpc.aio.insecure_channel(edge.grpc_target) as channel:
        call = auth_grpc.AuthServiceStub(channel).GetTenant(
            auth_pb.GetTenantRequest(name=f"tenants/{busy}"), metadata=tuple(bearer(busy_token).items())
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        metadata = {
            **dict(await call.initial_metadata() or ()),
            **dict(caught.value.trailing_metadata() or ()),
        }
        assert metadata["retry-after"] == "60"


async def test_a_client_sent_tenant_header_does_not_pick_the_bucket(
    edge: Edge, http: httpx.AsyncClient
) -> None:
    victim, victim_token = await edge.new_tenant()
    attacker, attacker_token = await edge.new_tenant()
    spoof = {TENANT_HEADER: victim}
    # Anonymous RPCs carry no verified tenant; a client's header must not count there either, or
    # these would drain the victim's bucket without any token.
    for _ in range(3):
        assert (await http.get("/.well-known/jwks.json", headers=spoof)).status_code == 200
    # The attacker's calls land in the attacker's bucket whatever the header says...
    assert await _statuses(http, attacker, attacker_token, 4, **spoof) == [200, 200, 200, 429]
    # ...so the victim's bucket is untouched, and the attacker cannot escape into it.
    assert await _statuses(http, victim, victim_token, 3) == [200, 200, 200]
    assert await _statuses(
        http, attacker, attacker_token, 1, **{TENANT_HEADER: f"edge-{secrets.token_hex(4)}"}
    ) == [429]


async def test_anonymous_credential_calls_are_limited_per_address(
    edge: Edge, http: httpx.AsyncClient
) -> None:
    guess = {"grant_type": "client_credentials", "client_secret": "ok_nope.wrong"}
    statuses = [(await http.post("/v1/oauth2/token", json=guess)).status_code for _ in range(3)]
    assert 429 not in statuses and all(400 <= s < 500 for s in statuses), statuses
    refused = await http.post("/v1/oauth2/token", json=guess)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    # The form-encoded token request (OAuth clients', services/auth/oauth.py) shares the bucket.
    form = await http.post("/v1/oauth2/token", data=guess)
    assert form.status_code == 429, form.text
    # Sign-up shares the address's bucket.
    signup = await http.post(
        f"/v1/tenants?tenantId=edge-{secrets.token_hex(4)}", json={"displayName": "Edge"}
    )
    assert signup.status_code == 429
    # Discovery and the JWKS (which Envoy fetches through itself) are not limited.
    for _ in range(5):
        assert (await http.get("/.well-known/jwks.json")).status_code == 200
    # Another client address has its own bucket.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=edge.url, transport=transport, timeout=10) as other:
        assert (await other.post("/v1/oauth2/token", json=guess)).status_code != 429
        form = await other.post("/v1/oauth2/token", data=guess)
        assert form.status_code == 401 and form.json()["error"] == "invalid_client", form.text


async def test_cors_preflight_is_answered_for_the_console_only(edge: Edge, http: httpx.AsyncClient) -> None:
    tenant, token = await edge.new_tenant()
    ask = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
    }
    allowed = await http.options(f"/v1/tenants/{tenant}/apiKeys", headers={"origin": CONSOLE, **ask})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == CONSOLE
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert {"authorization", "content-type"} <= {
        h.strip() for h in allowed.headers["access-control-allow-headers"].split(",")
    }
    assert allowed.headers["access-control-max-age"] == "600"

    other = await http.options(
        f"/v1/tenants/{tenant}/apiKeys", headers={"origin": "https://evil.example", **ask}
    )
    # Answered by Envoy too (never forwarded), but without the grant: no Allow-Origin, so the
    # browser refuses the actual request.
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers

    # Actual calls from the console carry the origin grant, errors included, and expose Retry-After.
    ok = await http.get(f"/v1/tenants/{tenant}", headers={"origin": CONSOLE, **bearer(token)})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == CONSOLE
    assert "retry-after" in ok.headers["access-control-expose-headers"]
    anonymous = await http.get(f"/v1/tenants/{tenant}", headers={"origin": CONSOLE})
    assert anonymous.status_code == 401 and anonymous.headers["access-control-allow-origin"] == CONSOLE
    stranger = await http.get(
        f"/v1/tenants/{tenant}", headers={"origin": "https://evil.example", **bearer(token)}
    )
    assert stranger.status_code == 200 and "access-control-allow-origin" not in stranger.headers


async def test_oversized_requests_are_refused(edge: Edge, http: httpx.AsyncClient) -> None:
    tenant, token = await edge.new_tenant()
    path = f"/v1/tenants/{tenant}/apiKeys"
    fits = await http.post(path, json={"displayName": "x" * 200, "roles": ["viewer"]}, headers=bearer(token))
    assert fits.status_code == 200, fits.text
    # Over the field's bound in the contract: refused by the service, naming the field.
    too_long = await http.post(
        path, json={"displayName": "x" * 201, "roles": ["viewer"]}, headers=bearer(token)
    )
    assert too_long.status_code == 400
    assert too_long.json()["details"][1]["fieldViolations"] == [
        {"field": "api_key.display_name", "description": "must be at most 200 characters"}
    ]
    # Over the gateway's caps: refused by Envoy, answered like every other error.
    too_big = await http.post(path, json={"displayName": "x" * MAX_BODY}, headers=bearer(token))
    assert too_big.status_code == 413
    assert _gateway_reason(too_big) == "REQUEST_TOO_LARGE"
    huge_header = await http.get(
        f"/v1/tenants/{tenant}", headers={**bearer(token), "x-padding": "x" * 40_000}
    )
    assert huge_header.status_code == 431
    assert _gateway_reason(huge_header) == "REQUEST_HEADERS_TOO_LARGE"


def _gateway_reason(response: httpx.Response) -> str:
    """The ErrorInfo reason of one of the gateway's own errors (checking its shape)."""
    assert response.headers["content-type"] == "application/json"
    (info,) = response.json()["details"]
    assert info["domain"] == "gateway.orchestrall.dev"
    return str(info["reason"])


async def test_verified_tokens_are_cached_and_refused_once_expired(
    edge: Edge, http: httpx.AsyncClient
) -> None:
    tenant, _ = await edge.new_tenant()
    now = int(time.time())
    token = edge.forger.valid(tenant, ["owner"], iat=now, exp=now + 2)
    hits = await edge.counter("http.gateway.jwt_authn.jwt_cache_hit")
    # One connection, so one Envoy worker and its cache: verified once, then found.
    assert await _statuses(http, tenant, token, 2) == [200, 200]
    assert await edge.counter("http.gateway.jwt_authn.jwt_cache_hit") == hits + 1
    # Past exp plus Envoy's leeway (whole seconds): a cache hit is checked against exp too.
    await asyncio.sleep(max(0.0, now + 2 + CLOCK_SKEW_SECONDS + 1.2 - time.time()))
    expired = await http.get(f"/v1/tenants/{tenant}", headers=bearer(token))
    assert expired.status_code == 401 and "expired" in expired.text, expired.text
