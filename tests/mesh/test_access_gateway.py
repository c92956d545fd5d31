"""Every external RPC through Envoy with real HTTP, against every attack.

Envoy's jwt_authn rejects bad tokens before anything is transcoded (401, or 403
for a wrong audience); the services reject another tenant's names and roles
without the permission, and Envoy maps those to 403/404.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from services.cli.stack import Stack
from services.kit.roles import ROLE_ORDER, permissions_of
from tests.attacks import Forger, Target, targets
from tests.conftest import current_signing_key
from tests.mesh.conftest import auth, grpc_headers

pytestmark = pytest.mark.mesh
TARGETS = targets()


@dataclass(frozen=True)
class SignedUp:
    tenant: str
    token: str


def sign_up(http: httpx.Client, prefix: str) -> SignedUp:
    tenant = f"{prefix}-{secrets.token_hex(4)}"
    created = http.post(f"/v1/tenants?tenantId={tenant}", json={"displayName": prefix})
    assert created.status_code == 200, created.text
    token = http.post(
        "/v1/oauth2/token",
        json={"grant_type": "client_credentials", "client_secret": created.json()["apiKeySecret"]},
    )
    return SignedUp(tenant, token.json()["access_token"])


@pytest.fixture(scope="module")
def forger(stack: Stack) -> Forger:
    settings = stack.config.settings("auth")
    key = current_signing_key(settings)
    return Forger(key.private_pem, key.kid, settings.issuer, settings.audience)


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        yield http


def send(http: httpx.Client, target: Target, tenant: str, token: str | None) -> httpx.Response:
    headers = auth(token) if token else {}
    body = b"{}" if target.http_verb in ("POST", "PATCH") else None
    if body is not None:
        headers["content-type"] = "application/json"
    return http.request(target.http_verb, target.rest_path(tenant), content=body, headers=headers)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.method.name)
def test_bad_tokens_stop_at_the_gateway(client: httpx.Client, forger: Forger, target: Target) -> None:
    victim = "victim-gw"
    statuses = {"no token": send(client, target, victim, None).status_code}
    for attack, token in forger.attacks(victim):
        statuses[attack] = send(client, target, victim, token).status_code
    assert all(code in (401, 403) for code in statuses.values()), statuses
    assert statuses["no token"] == 401 and statuses["expired"] == 401 and statuses["alg none"] == 401


def test_another_tenant_is_refused_and_reads_nothing(client: httpx.Client) -> None:
    victim, attacker = sign_up(client, "victim"), sign_up(client, "attacker")
    agent = client.post(
        f"/v1/tenants/{victim.tenant}/agents?agentId=secret-agent",
        json={"instructions": "classified"},
        headers=auth(victim.token),
    )
    assert agent.status_code == 200
    for target in TARGETS:
        if not target.tenant_scoped:
            continue
        response = send(client, target, victim.tenant, attacker.token)
        assert response.status_code == 403, (target.method.name, response.status_code, response.text)
        assert "classified" not in response.text and grpc_headers(response) == []
    still = client.get(f"/v1/tenants/{victim.tenant}/agents/secret-agent", headers=auth(victim.token))
    assert still.status_code == 200 and still.json()["instructions"] == "classified"


@pytest.mark.parametrize("role", [r for r in ROLE_ORDER if permissions_of([r]) < permissions_of(["owner"])])
def test_roles_without_the_permission_get_403(client: httpx.Client, forger: Forger, role: str) -> None:
    victim = sign_up(client, "roles")
    token = forger.valid(victim.tenant, [role])
    for target in TARGETS:
        if target.permission in permissions_of([role]):
            continue
        response = send(client, target, victim.tenant, token)
        assert response.status_code == 403, (target.method.name, response.text)
        reasons = [d.get("reason") for d in json.loads(response.text).get("details", [])]
        assert reasons == ["MISSING_PERMISSION"], reasons


def test_a_revoked_key_gets_no_token(client: httpx.Client) -> None:
    owner = sign_up(client, "revoke")
    made = client.post(
        f"/v1/tenants/{owner.tenant}/apiKeys", json={"roles": ["viewer"]}, headers=auth(owner.token)
    )
    secret, name = made.json()["apiKeySecret"], made.json()["apiKey"]["name"]
    grant = {"grant_type": "client_credentials", "client_secret": secret}
    assert client.post("/v1/oauth2/token", json=grant).status_code == 200
    assert client.delete(f"/v1/{name}", headers=auth(owner.token)).status_code == 200
    refused = client.post("/v1/oauth2/token", json=grant)
    assert refused.status_code == 401
    assert [d["reason"] for d in refused.json()["details"]] == ["INVALID_CLIENT"]
