"""Signing key rotation: publish first, sign later, keep old keys until their tokens expire."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import jwt
import pytest

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.auth.v1 import auth_service_pb2 as pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as pb_grpc
from services.auth import tokens
from services.auth.server import AuthSettings
from services.auth.server import build as build_auth
from services.kit.mtls import TlsFiles, channel_credentials
from services.kit.server import start
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, new_tenant

# Longer than the services' JWKS forced-refresh limit (5 s), as the default 25 min is
# longer than their 5 min cache: every verifier can know a key before it signs.
PUBLISH_DELAY_SECONDS = 6.0


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def fresh_token(mesh: Mesh, tenant: Tenant) -> str:
    async with mesh.channel("auth") as channel:
        answer = await pb_grpc.AuthServiceStub(channel).IssueToken(
            pb.IssueTokenRequest(grant_type="client_credentials", client_secret=tenant.secret)
        )
    return answer.access_token


async def jwks_kids(mesh: Mesh) -> set[str]:
    async with mesh.channel("auth") as channel:
        return {k.kid for k in (await pb_grpc.AuthServiceStub(channel).GetJwks(pb.GetJwksRequest())).keys}


async def accepted_by_agent_service(mesh: Mesh, tenant: Tenant, token: str) -> bool:
    async with mesh.channel("agent") as channel:
        try:
            await agent_grpc.AgentServiceStub(channel).ListAgents(
                agent_pb.ListAgentsRequest(parent=tenant.name),
                metadata=(("authorization", f"Bearer {token}"),),
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            return False
    return True


def test_a_replaced_key_outlives_every_token_it_signed() -> None:
    now = dt.datetime.now(dt.UTC)
    first = tokens.new_signing_key(now)
    second, (previous,) = tokens.rotate([first], now, dt.timedelta(minutes=25))
    assert previous.kid == first.kid and tokens.signing_key([previous, second], now) is previous
    later = second.activate_time
    assert tokens.signing_key([previous, second], later) is second
    assert previous.retire_time == later
    assert previous.expire_time is not None
    assert previous.expire_time >= later + tokens.TOKEN_LIFETIME, (
        "the last token of the old key must stay verifiable"
    )


async def test_rotation_publishes_before_signing_and_keeps_old_tokens_valid(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    settings = AuthSettings(
        **mesh.config.settings("auth").model_dump(exclude={"listen", "metrics_listen"}),
        listen="127.0.0.1:0",
        key_publish_delay_seconds=PUBLISH_DELAY_SECONDS,
    ).model_copy(update={"tls_dir": mesh.tls_dir})
    operator_auth = await start(*(await build_auth(settings)))
    try:
        old_token = await fresh_token(mesh, tenant)
        old_kid = kid_of(old_token)
        async with mesh.channel("auth", identity="gateway") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.AuthServiceStub(channel).RotateSigningKey(pb.RotateSigningKeyRequest())
            assert error_info(caught.value).reason == "SERVICE_NOT_ALLOWED"
        # The operator's identity (what `orchestrall rotate-keys` presents) may rotate.
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{operator_auth.port}",
            channel_credentials(TlsFiles.of(mesh.tls_dir, "cli")),
            options=[("grpc.ssl_target_name_override", "auth")],
        ) as channel:
            rotated = await pb_grpc.AuthServiceStub(channel).RotateSigningKey(pb.RotateSigningKeyRequest())
        assert rotated.previous_kid == old_kid and rotated.kid != old_kid
        # Published by every auth replica within its key refresh interval, not yet signing.
        for _ in range(40):
            if rotated.kid in await jwks_kids(mesh):
                break
            await asyncio.sleep(0.1)
        assert {old_kid, rotated.kid} <= await jwks_kids(mesh)
        unseen_old_token = await fresh_token(mesh, tenant)  # no verifier sees it before activation
        assert kid_of(unseen_old_token) == old_kid
        assert await accepted_by_agent_service(mesh, tenant, old_token)
        await asyncio.sleep(PUBLISH_DELAY_SECONDS + 0.5)
        # Now the new key signs; the old one is still published for the old tokens.
        new_token = await fresh_token(mesh, tenant)
        assert kid_of(new_token) == rotated.kid
        assert {old_kid, rotated.kid} <= await jwks_kids(mesh)
        assert await accepted_by_agent_service(mesh, tenant, new_token)
        assert await accepted_by_agent_service(mesh, tenant, unseen_old_token)
    finally:
        await operator_auth.stop(0)
