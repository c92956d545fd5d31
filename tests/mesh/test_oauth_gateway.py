"""Standard OAuth 2.0 clients get tokens through the gateway: authlib unchanged, raw forms, RFC 6749 errors.

The token endpoint takes ``application/x-www-form-urlencoded`` requests (RFC 6749 sections
4.3.2 and 4.4.2) with the client authenticated by HTTP Basic (section 2.3.1) or in the body,
answers section 5.1 JSON and section 5.2 errors, while the JSON form of the same URL stays
transcoded (google.rpc.Status errors). Everything goes through the real Envoy in front of
the real auth service (``services/auth/oauth.py``).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from authlib.integrations.base_client import OAuthError as AuthlibError
from authlib.integrations.httpx_client import OAuth2Client

from services.cli.stack import Stack
from tests.mesh.conftest import auth

pytestmark = pytest.mark.mesh

TOKEN_PATH = "/v1/oauth2/token"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Tenant:
    """A tenant signed up over REST, with its owner API key and one user."""

    id: str
    key_name: str
    key_secret: str
    email: str


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def tenant(http: httpx.Client) -> Tenant:
    tenant_id = f"oauth-{secrets.token_hex(4)}"
    created = http.post(f"/v1/tenants?tenantId={tenant_id}", json={"displayName": "OAuth clients"})
    assert created.status_code == 200, created.text
    body = created.json()
    token = http.post(
        TOKEN_PATH, json={"grant_type": "client_credentials", "client_secret": body["apiKeySecret"]}
    ).json()["access_token"]
    email = f"ops@{tenant_id}.example"
    user = http.post(
        f"/v1/tenants/{tenant_id}/users",
        json={"email": email, "password": PASSWORD, "roles": ["viewer"]},
        headers=auth(token),
    )
    assert user.status_code == 200, user.text
    return Tenant(tenant_id, body["apiKey"]["name"], body["apiKeySecret"], email)


def token_url(stack: Stack) -> str:
    return stack.config.gateway_url + TOKEN_PATH


def basic(client_id: str, client_secret: str) -> str:
    """An ``Authorization: Basic`` value per RFC 6749 section 2.3.1 (each part form-urlencoded first)."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_gets_a_client_credentials_token_with_an_api_key(
    stack: Stack, tenant: Tenant, method: str
) -> None:
    with OAuth2Client(
        tenant.key_name, tenant.key_secret, token_endpoint_auth_method=method, timeout=30
    ) as client:
        token = client.fetch_token(token_url(stack), grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["expires_in"] > 0
        assert token["scope"] == "owner"
        # The client attaches the token itself; the gateway and the service accept it.
        got = client.get(f"{stack.config.gateway_url}/v1/tenants/{tenant.id}")
    assert got.status_code == 200, got.text
    assert got.json()["name"] == f"tenants/{tenant.id}"


def test_authlib_reads_an_rfc6749_error(stack: Stack, tenant: Tenant) -> None:
    # The owner key holds the owner role only; asking for another scope is refused (section 5.2).
    with OAuth2Client(tenant.key_name, tenant.key_secret, scope="viewer", timeout=30) as client:
        with pytest.raises(AuthlibError) as refused:
            client.fetch_token(token_url(stack), grant_type="client_credentials")
    assert refused.value.error == "invalid_scope"
    assert "owner" in (refused.value.description or "")


def test_authlib_gets_a_password_token(stack: Stack, tenant: Tenant) -> None:
    # A public client (no secret; RFC 6749 section 2.1): the user's credentials are the grant.
    with OAuth2Client("orchestrall-cli", token_endpoint_auth_method="none", timeout=30) as client:
        token = client.fetch_token(
            token_url(stack), username=tenant.email, password=PASSWORD, tenant=tenant.id
        )
        assert token["scope"] == "viewer"
        got = client.get(f"{stack.config.gateway_url}/v1/tenants/{tenant.id}/agents")
    assert got.status_code == 200, got.text


def test_a_token_response_is_not_cached(http: httpx.Client, tenant: Tenant) -> None:
    answer = http.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={
            "authorization": basic(tenant.key_name, tenant.key_secret),
            # A charset parameter and another case are the same media type.
            "content-type": "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "no-store" and answer.headers["pragma"] == "no-cache"
    assert set(answer.json()) == {"access_token", "token_type", "expires_in", "scope"}


def test_basic_credentials_are_form_decoded(http: httpx.Client, tenant: Tenant) -> None:
    # RFC 6749 section 2.3.1: the client ID is form-urlencoded before base64, the slashes of the
    # key's name as %2F; the endpoint decodes them.
    pair = f"{quote(tenant.key_name, safe='')}:{tenant.key_secret}"
    assert "%2F" in pair
    answer = http.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"authorization": "Basic " + base64.b64encode(pair.encode()).decode()},
    )
    assert answer.status_code == 200, answer.text


def test_a_wrong_secret_with_basic_is_401_with_a_basic_challenge(http: httpx.Client, tenant: Tenant) -> None:
    answer = http.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"authorization": basic(tenant.key_name, tenant.key_secret + "x")},
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"
    assert answer.headers["www-authenticate"].startswith("Basic ")
    assert answer.headers["cache-control"] == "no-store"


def test_a_wrong_secret_in_the_body_is_401_invalid_client(http: httpx.Client, tenant: Tenant) -> None:
    answer = http.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": tenant.key_name,
            "client_secret": tenant.key_secret[:-1],
        },
    )
    assert answer.status_code == 401, answer.text
    body = answer.json()
    assert set(body) == {"error", "error_description"} and body["error"] == "invalid_client"


def test_an_unknown_grant_is_400_unsupported_grant_type(http: httpx.Client, tenant: Tenant) -> None:
    answer = http.post(
        TOKEN_PATH,
        data={"grant_type": "authorization_code", "code": "x"},
        headers={"authorization": basic(tenant.key_name, tenant.key_secret)},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials"},  # no client credentials at all
        {"client_secret": "oak_x.y"},  # no grant_type (a field the contract requires)
        {"grant_type": "password", "username": "ops@x.example", "password": PASSWORD},  # no tenant
    ],
)
def test_a_missing_parameter_is_400_invalid_request(http: httpx.Client, form: dict[str, str]) -> None:
    answer = http.post(TOKEN_PATH, data=form)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "invalid_request" and body["error_description"]


def test_two_ways_of_client_authentication_are_400_invalid_request(
    http: httpx.Client, tenant: Tenant
) -> None:
    answer = http.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_secret": tenant.key_secret},
        headers={"authorization": basic(tenant.key_name, tenant.key_secret)},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"


def test_a_repeated_parameter_is_400_invalid_request(http: httpx.Client, tenant: Tenant) -> None:
    body = f"grant_type=client_credentials&grant_type=password&client_secret={tenant.key_secret}"
    answer = http.post(
        TOKEN_PATH, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"


def test_a_wrong_password_is_400_invalid_grant(http: httpx.Client, tenant: Tenant) -> None:
    answer = http.post(
        TOKEN_PATH,
        data={"grant_type": "password", "username": tenant.email, "password": "wrong", "tenant": tenant.id},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"


def test_a_scope_beyond_the_credential_is_400_invalid_scope(http: httpx.Client, tenant: Tenant) -> None:
    answer = http.post(
        TOKEN_PATH,
        data={"grant_type": "password", "username": tenant.email, "password": PASSWORD, "tenant": tenant.id,
              "scope": "owner"},
    )  # fmt: skip
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_scope"


def test_the_json_form_stays_transcoded(http: httpx.Client, tenant: Tenant) -> None:
    ok = http.post(TOKEN_PATH, json={"grant_type": "client_credentials", "client_secret": tenant.key_secret})
    assert ok.status_code == 200, ok.text
    assert ok.json()["token_type"] == "Bearer"
    refused = http.post(TOKEN_PATH, json={"grant_type": "client_credentials", "client_secret": "oak_x.y"})
    assert refused.status_code == 401
    # google.rpc.Status, with the RFC 6749 code as the ErrorInfo reason.
    assert refused.json()["details"][0]["reason"] == "INVALID_CLIENT"


def test_discovery_lists_what_the_endpoint_supports(stack: Stack, http: httpx.Client) -> None:
    metadata = http.get("/.well-known/openid-configuration").json()
    assert metadata["token_endpoint"] == token_url(stack)
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert set(metadata["grant_types_supported"]) == {"client_credentials", "password"}
    assert {"viewer", "owner"} <= set(metadata["scopes_supported"])


def test_a_form_issued_token_is_in_the_audit_log(http: httpx.Client, tenant: Tenant) -> None:
    # The form endpoint calls IssueToken inside the kit's guard, so the issuance is audited as any call.
    owner = http.post(
        TOKEN_PATH, json={"grant_type": "client_credentials", "client_secret": tenant.key_secret}
    )
    headers = auth(owner.json()["access_token"])
    created = http.post(f"/v1/tenants/{tenant.id}/apiKeys", json={"roles": ["viewer"]}, headers=headers)
    assert created.status_code == 200, created.text
    key = created.json()
    issued = http.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"authorization": basic(key["apiKey"]["name"], key["apiKeySecret"])},
    )
    assert issued.status_code == 200, issued.text
    deadline = time.monotonic() + 30
    while True:
        listed = http.get(
            f"/v1/tenants/{tenant.id}/auditEvents",
            params={"resource": key["apiKey"]["name"]},
            headers=headers,
        )
        assert listed.status_code == 200, listed.text
        issuances = [e for e in listed.json().get("auditEvents", []) if e["method"].endswith("/IssueToken")]
        if issuances or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [e["outcome"] for e in issuances] == ["OK"], issuances
