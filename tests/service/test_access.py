"""Every external RPC of every service against every attack, over gRPC with mTLS.

The caller presents the gateway's certificate, as Envoy does, so only the
token can admit it. Cases: no token and seven forged tokens -> UNAUTHENTICATED;
a valid token of another tenant -> PERMISSION_DENIED or NOT_FOUND, nothing
read or changed; a role without the RPC's permission -> PERMISSION_DENIED.
Internal RPCs: every workload the policy table does not name, with no token or
a valid token of any role -> PERMISSION_DENIED ``SERVICE_NOT_ALLOWED``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from services.kit.config import SERVICES
from services.kit.roles import ROLE_ORDER, permissions_of
from services.kit.validation import violations
from tests.attacks import Forger, InternalTarget, Target, internal_targets, targets
from tests.conftest import Mesh, current_signing_key
from tests.service.helpers import Tenant, error_info, new_tenant

TARGETS = targets()
INTERNAL_TARGETS = internal_targets()
#: Every workload with a certificate of the mesh's CA.
WORKLOADS = (*SERVICES, "gateway", "cli")
# Longer than a few audit relay intervals (0.2 s in tests).
RELAY_SETTLE_SECONDS = 1.0
ATTACKS = ["expired", "bad signature", "alg none", "unknown kid", "wrong aud", "wrong iss", "garbage"]


@pytest.fixture(scope="module")
async def forger(mesh: Mesh) -> AsyncIterator[Forger]:
    settings = mesh.config.settings("auth").model_copy(update={"tls_dir": mesh.tls_dir})
    key = current_signing_key(settings)
    yield Forger(key.private_pem, key.kid, settings.issuer, settings.audience)


@pytest.fixture(scope="module")
async def victim(mesh: Mesh) -> Tenant:
    return await new_tenant(mesh, "victim")


async def call(mesh: Mesh, target: Target, tenant: str, token: str | None) -> grpc.aio.AioRpcError | None:
    """Calls ``target`` with a request naming ``tenant``'s resources; returns the error, if any."""
    request = target.request(tenant)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with mesh.channel(target.service) as channel:
        stub = channel.unary_unary(
            target.full_name,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b,
        )
        try:
            await stub(request, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as error:
            return error
    return None


async def snapshot(mesh: Mesh, tenant: Tenant) -> dict[str, str]:
    """What the tenant's owner reads from every Get and List RPC."""
    seen = {}
    for target in TARGETS:
        if target.http_verb != "GET" or not target.tenant_scoped:
            continue
        request = target.request(tenant.id)
        async with mesh.channel(target.service) as channel:
            stub = channel.unary_unary(
                target.full_name,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=lambda b: b,
            )
            try:
                seen[target.full_name] = (await stub(request, metadata=tenant.metadata, timeout=30)).hex()
            except grpc.aio.AioRpcError as error:
                seen[target.full_name] = error.code().name
    return seen


def test_the_matrix_covers_every_external_rpc() -> None:
    assert len(TARGETS) >= 30
    assert {t.service for t in TARGETS} == {"auth", "agent", "workflow", "flag", "billing"}


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.method.name)
async def test_no_token_is_unauthenticated(mesh: Mesh, victim: Tenant, target: Target) -> None:
    error = await call(mesh, target, victim.id, None)
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.method.name)
async def test_forged_tokens_are_rejected(
    mesh: Mesh, victim: Tenant, forger: Forger, target: Target, attack: str
) -> None:
    token = dict(forger.attacks(victim.id))[attack]
    error = await call(mesh, target, victim.id, token)
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED, attack


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.method.name)
async def test_the_control_token_is_admitted(
    mesh: Mesh, victim: Tenant, forger: Forger, target: Target
) -> None:
    """The forger's valid token passes authentication, so the attacks above fail for their flaw alone."""
    error = await call(mesh, target, victim.id, forger.valid(victim.id, ["owner"]))
    assert error is None or error.code() not in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_another_tenant_reads_and_changes_nothing(mesh: Mesh) -> None:
    victim, attacker = await new_tenant(mesh, "victim"), await new_tenant(mesh, "attacker")
    await asyncio.sleep(RELAY_SETTLE_SECONDS)  # the sign-ups' own audit events reach the log first
    before = await snapshot(mesh, victim)
    outcomes = {}
    for target in TARGETS:
        if not target.tenant_scoped:
            continue
        error = await call(mesh, target, victim.id, attacker.token)
        outcomes[target.method.name] = error.code().name if error else "OK"
    # require_tenant runs before any lookup: the answer never depends on what exists.
    assert set(outcomes.values()) == {"PERMISSION_DENIED"}, outcomes
    await asyncio.sleep(RELAY_SETTLE_SECONDS)
    assert await snapshot(mesh, victim) == before


@pytest.mark.parametrize("role", [r for r in ROLE_ORDER if permissions_of([r]) < permissions_of(["owner"])])
async def test_roles_without_the_permission_are_denied(
    mesh: Mesh, victim: Tenant, forger: Forger, role: str
) -> None:
    granted = permissions_of([role])
    denied = [t for t in TARGETS if t.permission not in granted]
    assert denied, f"{role} should lack some permission"
    for target in denied:
        error = await call(mesh, target, victim.id, forger.valid(victim.id, [role]))
        assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED, target.method.name
        assert error_info(error).reason == "MISSING_PERMISSION"


async def call_internal(
    mesh: Mesh, target: InternalTarget, identity: str, token: str | None
) -> grpc.aio.AioRpcError | None:
    """Calls ``target`` presenting ``identity``'s certificate (and ``token``); returns the error, if any."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with mesh.channel(target.service, identity=identity) as channel:
        stub = channel.unary_unary(
            target.full_name,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b,
        )
        try:
            await stub(target.request(), metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as error:
            return error
    return None


def test_the_internal_matrix_covers_every_internal_rpc() -> None:
    names = {t.method.name for t in INTERNAL_TARGETS}
    assert {"IngestUsageEvents", "CreateReservation", "SettleReservation", "ReleaseReservation"} <= names
    assert {t.service for t in INTERNAL_TARGETS if t.method.name == "ShouldRateLimit"} == {"billing"}
    assert all(t.callers for t in INTERNAL_TARGETS), "an internal RPC nobody may call"


@pytest.mark.parametrize("target", INTERNAL_TARGETS, ids=lambda t: t.method.name)
async def test_internal_rpcs_refuse_every_caller_the_policy_table_does_not_name(
    mesh: Mesh, victim: Tenant, forger: Forger, target: InternalTarget
) -> None:
    """No token of any role (the victim's own owner included) stands in for a caller's identity."""
    tokens = [None, *(forger.valid(victim.id, [role]) for role in ROLE_ORDER)]
    for identity in WORKLOADS:
        if identity in target.callers:
            # The control: admitted, then refused for the empty request alone (an RPC whose
            # empty request is valid, such as RotateSigningKey, is not called: it would act).
            if violations(target.request()):
                error = await call_internal(mesh, target, identity, None)
                assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, identity
            continue
        for token in tokens:
            error = await call_internal(mesh, target, identity, token)
            assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED, identity
            assert error_info(error).reason == "SERVICE_NOT_ALLOWED", identity
