"""OFREP through Envoy: the real ``openfeature-provider-ofrep`` and plain HTTP against the flag service.

The provider posts to ``/ofrep/v1/evaluate/flags/{key}`` on the gateway's port with a
tenant's token (its ``headers_factory``), exactly as it would against any OFREP
server. Bulk evaluation, ETags and the error shapes are checked with httpx.
Expected targeting outcomes come from ``FlagdCore`` loaded with the same
definitions (:func:`tests.mesh.test_flagd.oracle`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from services.cli.stack import Stack
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import SignedUp, sign_up
from tests.mesh.test_flagd import FLAGS, _rest_flag, oracle

pytestmark = pytest.mark.mesh

SINGLE = "/ofrep/v1/evaluate/flags/{}"
BULK = "/ofrep/v1/evaluate/flags"


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def owner(http: httpx.Client) -> SignedUp:
    tenant = sign_up(http, "ofrep")
    for key, definition in FLAGS.items():
        created = http.post(
            f"/v1/tenants/{tenant.tenant}/flags",
            params={"flagId": key},
            json=_rest_flag(definition),
            headers=auth(tenant.token),
        )
        assert created.status_code == 200, created.text
    return tenant


def ofrep_client(stack: Stack, token: str | None, domain: str) -> OpenFeatureClient:
    """An OpenFeature client of ``domain`` on the real OFREP provider, pointed at the gateway."""
    headers = auth(token) if token else {}
    api.set_provider(OFREPProvider(stack.config.gateway_url, headers_factory=lambda: headers), domain)
    return api.get_client(domain)


@pytest.fixture(scope="module")
def client(stack: Stack, owner: SignedUp) -> OpenFeatureClient:
    return ofrep_client(stack, owner.token, f"ofrep-{owner.tenant}")


def test_every_flag_type_resolves_as_flagd_would(client: OpenFeatureClient) -> None:
    dark = client.get_boolean_details("dark-mode", False)
    assert (dark.value, dark.variant, dark.reason, dark.error_code) == (True, "on", Reason.STATIC, None)
    welcome = client.get_string_details("welcome", "", EvaluationContext(attributes={"email": "x@y.example"}))
    assert (welcome.value, welcome.variant, welcome.reason) == ("Hello", "plain", Reason.DEFAULT)
    size = client.get_integer_details("page-size", 1, EvaluationContext(attributes={"app_version": "2.1.0"}))
    assert (size.value, size.variant, size.reason) == (100, "large", Reason.TARGETING_MATCH)
    assert type(size.value) is int
    rate = client.get_float_details("sample-rate", 0.0, EvaluationContext("user-1"))
    assert rate.value in (0.25, 0.75) and rate.reason == Reason.TARGETING_MATCH and rate.error_code is None
    theme = client.get_object_details("theme", {})
    assert (theme.value, theme.variant, theme.reason) == ({"color": "red", "depth": 2}, "red", Reason.STATIC)


@pytest.mark.parametrize(
    ("key", "kind", "context"),
    [
        ("welcome", "string", EvaluationContext(attributes={"email": "ann@acme.example"})),
        ("welcome", "string", EvaluationContext(attributes={"email": "beta-bob@example.org"})),
        ("welcome", "string", EvaluationContext(attributes={"email": "carol@example.org"})),
        ("page-size", "integer", EvaluationContext(attributes={"app_version": "1.9.9"})),
        ("page-size", "integer", EvaluationContext(attributes={"app_version": "2.0.0"})),
        ("self-aware", "string", EvaluationContext()),
        *[("sample-rate", "float", EvaluationContext(f"user-{i}")) for i in range(8)],
    ],
)
def test_targeting_matches_flagds_own_evaluator(
    client: OpenFeatureClient, key: str, kind: str, context: EvaluationContext
) -> None:
    expected = getattr(oracle(), f"resolve_{kind}_value")(key, None, context)
    got = getattr(client, f"get_{kind}_details")(key, expected.value, context)
    assert (got.value, got.variant, got.reason, got.error_code) == (
        expected.value,
        expected.variant,
        expected.reason,
        None,
    )


def test_fractional_rollout_splits_targeting_keys(client: OpenFeatureClient) -> None:
    seen = {client.get_float_value("sample-rate", 0.0, EvaluationContext(f"key-{i}")) for i in range(40)}
    assert seen == {0.25, 0.75}


def test_disabled_missing_and_mismatched_flags(client: OpenFeatureClient) -> None:
    retired = client.get_boolean_details("retired", False)
    assert (retired.value, retired.reason, retired.error_code) == (False, Reason.DISABLED, None)
    missing = client.get_boolean_details("no-such-flag", True)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    # OFREP names no type (its ADR 0003): the provider finds the mismatch in the value's JSON type.
    for mismatch in (
        client.get_string_details("dark-mode", "fallback"),
        client.get_integer_details("sample-rate", 7, EvaluationContext("user-1")),
        client.get_float_details("page-size", 0.5),
        client.get_boolean_details("theme", True),
    ):
        assert (mismatch.reason, mismatch.error_code) == (Reason.ERROR, ErrorCode.TYPE_MISMATCH), mismatch


def test_single_evaluation_on_the_wire(http: httpx.Client, owner: SignedUp) -> None:
    ok = http.post(
        SINGLE.format("page-size"),
        json={"context": {"targetingKey": "u", "app_version": "2.0.0"}},
        headers=auth(owner.token),
    )
    assert ok.status_code == 200, ok.text
    assert ok.headers["content-type"] == "application/json"
    assert ok.json() == {
        "key": "page-size",
        "value": 100,
        "reason": "TARGETING_MATCH",
        "variant": "large",
        "metadata": {},
    }
    assert not any(name.startswith(("grpc-", "x-ofrep")) for name in ok.headers)
    disabled = http.post(SINGLE.format("retired"), json={}, headers=auth(owner.token))
    assert disabled.status_code == 200, disabled.text
    assert disabled.json() == {"key": "retired", "reason": "DISABLED", "variant": "", "metadata": {}}
    missing = http.post(SINGLE.format("nope"), json={"context": {}}, headers=auth(owner.token))
    assert missing.status_code == 404
    assert missing.json() == {
        "key": "nope",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "flag 'nope' was not found",
    }


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        (b"{not json", "PARSE_ERROR"),
        (b"[1, 2]", "PARSE_ERROR"),
        (b'{"context": NaN}', "PARSE_ERROR"),
        (b'{"context": "text"}', "INVALID_CONTEXT"),
        (b'{"context": ' + b'{"a": ' * 20 + b"1" + b"}" * 21, "INVALID_CONTEXT"),
        (b"[" * 100_000, "PARSE_ERROR"),
    ],
    ids=["not JSON", "an array", "NaN", "context a string", "context 20 deep", "100,000-deep array"],
)
def test_bad_requests_get_ofreps_error_shapes(
    http: httpx.Client, owner: SignedUp, body: bytes, error_code: str
) -> None:
    headers = {**auth(owner.token), "content-type": "application/json"}
    single = http.post(SINGLE.format("dark-mode"), content=body, headers=headers)
    assert single.status_code == 400, single.text
    assert single.json()["key"] == "dark-mode"
    assert single.json()["errorCode"] == error_code
    assert isinstance(single.json()["errorDetails"], str)
    bulk = http.post(BULK, content=body, headers=headers)
    assert bulk.status_code == 400, bulk.text
    assert set(bulk.json()) == {"errorCode", "errorDetails"} and bulk.json()["errorCode"] == error_code


def test_bulk_evaluation_with_etag_and_304(http: httpx.Client, owner: SignedUp) -> None:
    headers = auth(owner.token)
    staff = {"context": {"targetingKey": "user-3", "email": "ann@acme.example", "app_version": "2.0.0"}}
    first = http.post(BULK, json=staff, headers=headers)
    assert first.status_code == 200, first.text
    body = first.json()
    items: dict[str, dict[str, Any]] = {item["key"]: item for item in body["flags"]}
    assert [item["key"] for item in body["flags"]] == sorted(FLAGS)
    assert items["welcome"] == {
        "key": "welcome",
        "value": "Hi colleague",
        "reason": "TARGETING_MATCH",
        "variant": "staff",
        "metadata": {},
    }
    assert items["page-size"]["value"] == 100 and items["retired"]["reason"] == "DISABLED"
    assert "value" not in items["retired"]
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = http.post(BULK, json=staff, headers={**headers, "if-none-match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    weak = http.post(BULK, json=staff, headers={**headers, "if-none-match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    # Another context is another answer: the old tag does not match it.
    plain = http.post(BULK, json={"context": {"email": "carol@example.org"}}, headers=headers)
    assert plain.status_code == 200 and plain.headers["etag"] != etag
    stale = http.post(
        BULK, json={"context": {"email": "carol@example.org"}}, headers={**headers, "if-none-match": etag}
    )
    assert stale.status_code == 200 and stale.json() == plain.json()

    # A change to a flag changes the answer, and the tag with it.
    updated = http.patch(
        f"/v1/tenants/{owner.tenant}/flags/dark-mode",
        params={"updateMask": "defaultVariant"},
        json={"defaultVariant": "off"},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    try:
        changed = http.post(BULK, json=staff, headers={**headers, "if-none-match": etag})
        assert changed.status_code == 200, changed.text
        assert changed.headers["etag"] != etag
        dark = next(item for item in changed.json()["flags"] if item["key"] == "dark-mode")
        assert (dark["value"], dark["variant"]) == (False, "off")
    finally:
        http.patch(
            f"/v1/tenants/{owner.tenant}/flags/dark-mode",
            params={"updateMask": "defaultVariant"},
            json={"defaultVariant": "on"},
            headers=headers,
        )


def test_another_tenants_token_sees_none_of_the_flags(
    stack: Stack, http: httpx.Client, owner: SignedUp
) -> None:
    other = sign_up(http, "ofrep-other")
    outsider = ofrep_client(stack, other.token, f"ofrep-{other.tenant}")
    for key in FLAGS:
        details = outsider.get_boolean_details(key, False)
        assert details.error_code == ErrorCode.FLAG_NOT_FOUND, (key, details)
    bulk = http.post(BULK, json={"context": {"tenant": owner.tenant}}, headers=auth(other.token))
    assert bulk.status_code == 200 and bulk.json() == {"flags": [], "metadata": {}}
    single = http.post(SINGLE.format("dark-mode"), json={}, headers=auth(other.token))
    assert single.status_code == 404


def test_no_token_is_401(stack: Stack, http: httpx.Client) -> None:
    for path in (SINGLE.format("dark-mode"), BULK):
        refused = http.post(path, json={"context": {}})
        assert refused.status_code == 401, refused.text
        forged = http.post(path, json={"context": {}}, headers=auth("not.a.jwt"))
        assert forged.status_code == 401, forged.text
    anonymous = ofrep_client(stack, None, "ofrep-anonymous").get_boolean_details("dark-mode", True)
    assert (anonymous.value, anonymous.error_code, anonymous.error_message) == (
        True,
        ErrorCode.GENERAL,
        "unauthorized",
    )
