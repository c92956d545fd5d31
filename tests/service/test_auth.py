"""Auth service over real gRPC with mTLS."""

from __future__ import annotations

import grpc
import pytest

from orchestrall.auth.v1 import auth_service_pb2 as pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as pb_grpc
from orchestrall.auth.v1 import resources_pb2 as res
from tests.conftest import Mesh
from tests.service.helpers import error_info, field_violations, new_tenant


async def test_sign_up_token_and_scoped_reads(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    other = await new_tenant(mesh)
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        got = await stub.GetTenant(pb.GetTenantRequest(name=tenant.name), metadata=tenant.metadata)
        assert got.display_name == "Test Co"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetTenant(pb.GetTenantRequest(name=other.name), metadata=tenant.metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).reason == "TENANT_MISMATCH"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetTenant(pb.GetTenantRequest(name=tenant.name))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_duplicate_and_invalid_tenants(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateTenant(
                pb.CreateTenantRequest(tenant_id=tenant.id, tenant=res.Tenant(display_name="x"))
            )
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateTenant(pb.CreateTenantRequest(tenant_id="Bad_ID", tenant=res.Tenant()))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(caught.value)) >= {"tenant.display_name"}


async def test_api_keys_are_idempotent_listed_and_revocable(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        request = pb.CreateApiKeyRequest(
            parent=tenant.name, api_key=res.ApiKey(display_name="ci", roles=["developer"]), request_id="req-1"
        )
        first = await stub.CreateApiKey(request, metadata=tenant.metadata)
        again = await stub.CreateApiKey(request, metadata=tenant.metadata)
        assert first.api_key.name == again.api_key.name
        assert first.api_key_secret and not again.api_key_secret
        listed = await stub.ListApiKeys(
            pb.ListApiKeysRequest(parent=tenant.name, page_size=1), metadata=tenant.metadata
        )
        assert len(listed.api_keys) == 1 and listed.next_page_token
        token = await stub.IssueToken(
            pb.IssueTokenRequest(grant_type="client_credentials", client_secret=first.api_key_secret)
        )
        assert token.scope == "developer"
        await stub.DeleteApiKey(pb.DeleteApiKeyRequest(name=first.api_key.name), metadata=tenant.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueToken(
                pb.IssueTokenRequest(grant_type="client_credentials", client_secret=first.api_key_secret)
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(caught.value).reason == "INVALID_CLIENT"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueToken(
                pb.IssueTokenRequest(grant_type="authorization_code", client_secret=tenant.secret)
            )
        assert error_info(caught.value).reason == "UNSUPPORTED_GRANT_TYPE"


async def test_tampered_and_foreign_tokens_are_rejected(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    header, payload, signature = tenant.token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    unsigned = f"eyJhbGciOiJub25lIn0.{payload}."
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        for token in (forged, unsigned, "not-a-jwt"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetTenant(
                    pb.GetTenantRequest(name=tenant.name), metadata=(("authorization", f"Bearer {token}"),)
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_jwks_and_discovery(mesh: Mesh) -> None:
    async with mesh.channel("auth") as channel:
        stub = pb_grpc.AuthServiceStub(channel)
        jwks = await stub.GetJwks(pb.GetJwksRequest())
        assert jwks.keys and all(k.kty == "OKP" and k.alg == "EdDSA" for k in jwks.keys)
        config = await stub.GetOpenIdConfiguration(pb.GetOpenIdConfigurationRequest())
        assert config.jwks_uri == f"{config.issuer}/.well-known/jwks.json"
