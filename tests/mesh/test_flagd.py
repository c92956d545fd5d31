"""The real OpenFeature flagd provider, in RPC and in-process mode, against the flag service through Envoy.

The provider (``openfeature-provider-flagd``) talks ``flagd.evaluation.v2`` (RPC mode) or
``flagd.sync.v1`` (in-process mode: it evaluates the synced definitions itself) as native
gRPC to the gateway's plaintext port with a tenant's token as call credentials, exactly
as it would talk to flagd. Expected targeting outcomes come from ``FlagdCore``
(``openfeature-flagd-core``, flagd's Python evaluator) loaded with the same definitions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2 as v1
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2_grpc as v1_grpc

from services.cli.stack import Stack
from tests.attacks import Forger, GrpcTarget, grpc_targets
from tests.conftest import current_signing_key
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import SignedUp, sign_up

pytestmark = pytest.mark.mesh

#: Flag key -> flagd definition (state, variants, defaultVariant, targeting).
FLAGS: dict[str, dict[str, Any]] = {
    "dark-mode": {"variants": {"on": True, "off": False}, "defaultVariant": "on"},
    "welcome": {
        "variants": {"staff": "Hi colleague", "beta": "Hi tester", "plain": "Hello"},
        "defaultVariant": "plain",
        "targeting": {
            "if": [
                {"ends_with": [{"var": "email"}, "@acme.example"]},
                "staff",
                {"starts_with": [{"var": "email"}, "beta-"]},
                "beta",
                None,
            ]
        },
    },
    "page-size": {
        "variants": {"large": 100, "small": 10},
        "defaultVariant": "small",
        "targeting": {"if": [{"sem_ver": [{"var": "app_version"}, ">=", "2.0.0"]}, "large", "small"]},
    },
    "sample-rate": {
        "variants": {"low": 0.25, "high": 0.75},
        "defaultVariant": "low",
        "targeting": {"fractional": [["low", 50], ["high", 50]]},
    },
    "theme": {"variants": {"red": {"color": "red", "depth": 2}}, "defaultVariant": "red"},
    "self-aware": {
        "variants": {"yes": "knows its key", "no": "does not"},
        "defaultVariant": "no",
        "targeting": {
            "if": [
                {
                    "and": [
                        {"==": [{"var": "$flagd.flagKey"}, "self-aware"]},
                        {">": [{"var": "$flagd.timestamp"}, 1_600_000_000]},
                    ]
                },
                "yes",
                "no",
            ]
        },
    },
    "retired": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
}


def _rest_flag(definition: dict[str, Any]) -> dict[str, Any]:
    body = {
        "state": "STATE_DISABLED" if definition.get("state") == "DISABLED" else "STATE_ENABLED",
        "variants": definition["variants"],
        "defaultVariant": definition["defaultVariant"],
    }
    if "targeting" in definition:
        body["targeting"] = definition["targeting"]
    return body


def oracle() -> FlagdCore:
    """flagd's own evaluator loaded with :data:`FLAGS`."""
    core = FlagdCore()
    core.set_flags({"flags": {k: {"state": "ENABLED", **v} for k, v in FLAGS.items()}})
    return core


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def owner(http: httpx.Client) -> SignedUp:
    tenant = sign_up(http, "flagd")
    for key, definition in FLAGS.items():
        created = http.post(
            f"/v1/tenants/{tenant.tenant}/flags",
            params={"flagId": key},
            json=_rest_flag(definition),
            headers=auth(tenant.token),
        )
        assert created.status_code == 200, created.text
    return tenant


def gateway_port(stack: Stack) -> int:
    port = urlsplit(stack.config.gateway_url).port
    assert port is not None
    return port


def credentials(token: str) -> grpc.ChannelCredentials:
    """Plaintext to the gateway's local port, with the token as ``authorization: Bearer``."""
    return grpc.composite_channel_credentials(
        grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
        grpc.access_token_call_credentials(token),
    )


def provider(
    stack: Stack, token: str, resolver: ResolverType = ResolverType.RPC, selector: str | None = None
) -> FlagdProvider:
    """The flagd provider against the gateway: RPC mode (it asks for each evaluation) or
    in-process mode (it syncs the definitions over ``flagd.sync.v1`` and evaluates itself),
    of one flag set when it has a ``selector``."""
    return FlagdProvider(
        resolver_type=resolver,
        host="127.0.0.1",
        port=gateway_port(stack),
        channel_credentials=credentials(token),
        deadline_ms=5000,
        cache=CacheType.DISABLED,
        selector=selector,
    )


@pytest.fixture(scope="module", params=[ResolverType.RPC, ResolverType.IN_PROCESS], ids=["rpc", "in-process"])
def client(stack: Stack, owner: SignedUp, request: pytest.FixtureRequest) -> Iterator[OpenFeatureClient]:
    domain = f"flagd-{owner.tenant}-{request.param.value}"
    connected = provider(stack, owner.token, request.param)
    api.set_provider_and_wait(connected, domain)
    yield api.get_client(domain)
    connected.shutdown()


def test_every_flag_type_resolves_as_flagd_would(client: OpenFeatureClient) -> None:
    dark = client.get_boolean_details("dark-mode", False)
    assert (dark.value, dark.variant, dark.reason) == (True, "on", Reason.STATIC)
    theme = client.get_object_details("theme", {})
    assert (theme.value, theme.variant, theme.reason) == ({"color": "red", "depth": 2}, "red", Reason.STATIC)
    size = client.get_integer_details("page-size", 1, EvaluationContext(attributes={"app_version": "2.1.0"}))
    assert (size.value, size.variant, size.reason) == (100, "large", Reason.TARGETING_MATCH)
    rate = client.get_float_details("sample-rate", 0.0, EvaluationContext("user-1"))
    assert rate.value in (0.25, 0.75) and rate.reason == Reason.TARGETING_MATCH


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
    assert (got.value, got.variant, got.reason) == (expected.value, expected.variant, expected.reason)
    assert got.error_code is None


def test_fractional_rollout_splits_targeting_keys(client: OpenFeatureClient) -> None:
    seen = {client.get_float_value("sample-rate", 0.0, EvaluationContext(f"key-{i}")) for i in range(40)}
    assert seen == {0.25, 0.75}


def test_disabled_missing_and_mismatched_flags(client: OpenFeatureClient) -> None:
    retired = client.get_boolean_details("retired", False)
    assert (retired.value, retired.reason, retired.variant, retired.error_code) == (
        False,
        Reason.DISABLED,
        None,
        None,
    )
    missing = client.get_boolean_details("no-such-flag", True)
    assert (missing.value, missing.reason, missing.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    mismatch = client.get_string_details("dark-mode", "fallback")
    assert (mismatch.value, mismatch.reason, mismatch.error_code) == (
        "fallback",
        Reason.ERROR,
        ErrorCode.TYPE_MISMATCH,
    )


def test_resolve_all_over_v1(stack: Stack, owner: SignedUp) -> None:
    with grpc.secure_channel(f"127.0.0.1:{gateway_port(stack)}", credentials(owner.token)) as channel:
        answer = v1_grpc.ServiceStub(channel).ResolveAll(v1.ResolveAllRequest(), timeout=10)
    assert set(answer.flags) == set(FLAGS) - {"retired"}
    assert answer.flags["dark-mode"].bool_value is True
    page_size = answer.flags["page-size"]
    assert (page_size.double_value, page_size.variant, page_size.reason) == (10, "small", "TARGETING_MATCH")
    assert answer.flags["theme"].object_value["color"] == "red"


def test_a_change_reaches_a_connected_provider_within_a_second(
    http: httpx.Client, owner: SignedUp, client: OpenFeatureClient
) -> None:
    changed = threading.Event()
    flags: list[str] = []

    def on_change(details: EventDetails) -> None:
        flags.extend(details.flags_changed or [])
        changed.set()

    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        start = time.monotonic()
        updated = http.patch(
            f"/v1/tenants/{owner.tenant}/flags/dark-mode",
            params={"updateMask": "defaultVariant"},
            json={"defaultVariant": "off"},
            headers=auth(owner.token),
        )
        assert updated.status_code == 200, updated.text
        assert changed.wait(1.0), "no configuration_change within 1 s"
        latency = time.monotonic() - start
        print(f"UpdateFlag -> provider configuration_change: {latency * 1000:.1f} ms")
        assert flags == ["dark-mode"]
        assert client.get_boolean_details("dark-mode", True).variant == "off"
    finally:
        client.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
        http.patch(
            f"/v1/tenants/{owner.tenant}/flags/dark-mode",
            params={"updateMask": "defaultVariant"},
            json={"defaultVariant": "on"},
            headers=auth(owner.token),
        )


def test_another_tenants_token_sees_none_of_the_flags(
    stack: Stack, http: httpx.Client, owner: SignedUp
) -> None:
    other = sign_up(http, "flagd-other")
    domain = f"flagd-{other.tenant}"
    connected = provider(stack, other.token)
    api.set_provider_and_wait(connected, domain)
    try:
        outsider = api.get_client(domain)
        for key in FLAGS:
            details = outsider.get_boolean_details(key, False)
            assert details.error_code == ErrorCode.FLAG_NOT_FOUND, (key, details)
    finally:
        connected.shutdown()
    with grpc.secure_channel(f"127.0.0.1:{gateway_port(stack)}", credentials(other.token)) as channel:
        assert v1_grpc.ServiceStub(channel).ResolveAll(v1.ResolveAllRequest(), timeout=10).flags == {}


@pytest.mark.parametrize("resolver", [ResolverType.RPC, ResolverType.IN_PROCESS], ids=["rpc", "in-process"])
def test_a_provider_with_a_selector_sees_only_its_flag_set(
    stack: Stack, http: httpx.Client, owner: SignedUp, resolver: ResolverType
) -> None:
    flags = f"/v1/tenants/{owner.tenant}/flags"
    beta = {**_rest_flag(FLAGS["dark-mode"]), "flagSet": "beta"}
    created = http.post(flags, params={"flagId": "beta-only"}, json=beta, headers=auth(owner.token))
    assert created.status_code == 200, created.text
    domain = f"flagd-{owner.tenant}-beta-{resolver.value}"
    connected = provider(stack, owner.token, resolver, selector="flagSetId=beta")
    try:
        api.set_provider_and_wait(connected, domain)
        selected = api.get_client(domain)
        inside = selected.get_boolean_details("beta-only", False)
        assert (inside.value, inside.variant, inside.error_code) == (True, "on", None)
        outside = selected.get_boolean_details("dark-mode", False)
        assert (outside.value, outside.error_code) == (False, ErrorCode.FLAG_NOT_FOUND)
    finally:
        connected.shutdown()
        http.delete(f"{flags}/beta-only", headers=auth(owner.token))


@pytest.fixture(scope="module")
def forger(stack: Stack) -> Forger:
    settings = stack.config.settings("auth")
    key = current_signing_key(settings)
    return Forger(key.private_pem, key.kid, settings.issuer, settings.audience)


def call(channel: grpc.Channel, target: GrpcTarget, token: str | None) -> grpc.StatusCode:
    """Calls ``target`` with ``token``; returns the status (a stream's status after its first message)."""
    metadata = tuple(auth(token).items()) if token else ()
    serializer = {"request_serializer": lambda m: m.SerializeToString(), "response_deserializer": bytes}
    try:
        if target.streaming:
            stream = channel.unary_stream(target.full_name, **serializer)(
                target.request(), metadata=metadata, timeout=10
            )
            next(iter(stream))
            stream.cancel()
        else:
            channel.unary_unary(target.full_name, **serializer)(
                target.request(), metadata=metadata, timeout=10
            )
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("target", grpc_targets(), ids=lambda t: t.full_name)
def test_every_flagd_rpc_refuses_bad_tokens_and_missing_permissions(
    stack: Stack, forger: Forger, target: GrpcTarget
) -> None:
    victim = "victim-flagd"
    with grpc.insecure_channel(f"127.0.0.1:{gateway_port(stack)}") as channel:
        codes = {"no token": call(channel, target, None)}
        codes.update({attack: call(channel, target, token) for attack, token in forger.attacks(victim)})
        no_role = call(channel, target, forger.valid(victim, []))
        granted = call(channel, target, forger.valid(victim, ["viewer"]))
    assert set(codes.values()) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}, codes
    assert codes["no token"] == codes["expired"] == codes["alg none"] == grpc.StatusCode.UNAUTHENTICATED
    assert no_role == grpc.StatusCode.PERMISSION_DENIED
    # The control case: a viewer of a tenant without flags gets flagd's answer, not a refusal.
    assert granted in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND), granted
