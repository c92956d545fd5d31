"""AuthService: protos in, domain calls, protos out."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from orchestrall.auth.v1 import auth_service_pb2 as pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as pb_grpc
from orchestrall.auth.v1 import resources_pb2 as res
from services.auth import errors, store, tokens
from services.auth.models import ApiKey, SigningKey, Tenant
from services.kit.auth import require_tenant
from services.kit.db import Database
from services.kit.errors import FieldViolation, InvalidArgument, invalid
from services.kit.names import new_id, parse, validate_id
from services.kit.pagination import page_of
from services.kit.timestamps import to_timestamp, utcnow

ADMIN_ROLES = ["admin"]
KNOWN_ROLES = {"owner", "admin", "developer", "viewer"}


def tenant_to_proto(tenant: Tenant) -> res.Tenant:
    """Maps a tenant row to its resource."""
    return res.Tenant(
        name=f"tenants/{tenant.id}",
        display_name=tenant.display_name,
        industry=tenant.industry,
        create_time=to_timestamp(tenant.create_time),
    )


def api_key_to_proto(key: ApiKey) -> res.ApiKey:
    """Maps an API key row to its resource (never the secret)."""
    return res.ApiKey(
        name=f"tenants/{key.tenant_id}/apiKeys/{key.id}",
        display_name=key.display_name,
        roles=key.roles,
        key_prefix=f"{tokens.KEY_PREFIX}{key.id[:8]}",
        create_time=to_timestamp(key.create_time),
    )


def _new_api_key(
    tenant_id: str, display_name: str, roles: list[str], request_id: str | None
) -> tuple[ApiKey, str]:
    key_id = new_id().replace("-", "")
    secret = tokens.new_api_key_secret(key_id)
    row = ApiKey(
        id=key_id,
        tenant_id=tenant_id,
        display_name=display_name,
        roles=roles,
        secret_sha256=tokens.secret_sha256(secret),
        request_id=request_id,
        create_time=utcnow(),
    )
    return row, secret


class AuthService(pb_grpc.AuthServiceServicer):
    """Tenants, API keys, tokens and the JWKS.

    Args:
        db: The auth database.
        issuer: ``iss`` of issued tokens, also the OIDC issuer URL.
        audience: ``aud`` of issued tokens.
    """

    def __init__(self, db: Database, issuer: str, audience: str) -> None:
        self._db = db
        self._issuer = issuer.rstrip("/")
        self._audience = audience

    async def ensure_signing_key(self) -> None:
        """Creates the first signing key when none is published."""
        async with self._db.transaction() as session:
            if not await store.published_keys(session, utcnow()):
                await store.add_signing_key(session, tokens.new_signing_key(utcnow()))

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS as a dict, for this service's own token verifier."""
        async with self._db.transaction() as session:
            keys = await store.published_keys(session, utcnow())
        return {"keys": [dict(k.public_jwk) for k in keys]}

    async def _active_key(self) -> SigningKey:
        async with self._db.transaction() as session:
            keys = await store.published_keys(session, utcnow())
        if not keys:
            await self.ensure_signing_key()
            return await self._active_key()
        return keys[0]

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTenantResponse:
        violations = []
        if not request.tenant_id or len(request.tenant_id) < 3:
            violations.append(FieldViolation("tenant_id", "must be 3-63 characters (AIP-122)"))
        if not request.tenant.display_name.strip() or len(request.tenant.display_name) > 200:
            violations.append(FieldViolation("tenant.display_name", "is required, at most 200 characters"))
        if violations:
            raise InvalidArgument(violations)
        tenant_id = validate_id(request.tenant_id, "tenant_id", minimum=3)
        tenant = Tenant(
            id=tenant_id,
            display_name=request.tenant.display_name.strip(),
            industry=request.tenant.industry.strip()[:100],
            create_time=utcnow(),
        )
        key, secret = _new_api_key(tenant_id, "admin (created with the tenant)", ADMIN_ROLES, None)
        async with self._db.transaction() as session:
            if not await store.add_tenant(session, tenant):
                raise errors.tenant_exists(f"tenants/{tenant_id}")
            await store.add_api_key(session, key)
        return pb.CreateTenantResponse(
            tenant=tenant_to_proto(tenant), api_key=api_key_to_proto(key), api_key_secret=secret
        )

    async def GetTenant(self, request: pb.GetTenantRequest, context: grpc.aio.ServicerContext) -> res.Tenant:
        (tenant_id,) = parse(request.name, "name", "tenants")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            tenant = await store.get_tenant(session, tenant_id)
        if tenant is None:
            raise errors.tenant_not_found(request.name)
        return tenant_to_proto(tenant)

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        (tenant_id,) = parse(request.parent, "parent", "tenants")
        require_tenant(tenant_id)
        roles = list(request.api_key.roles) or ["developer"]
        unknown = sorted(set(roles) - KNOWN_ROLES)
        if unknown:
            raise invalid("api_key.roles", f"unknown roles {unknown}; known: {sorted(KNOWN_ROLES)}")
        request_id = request.request_id or None
        async with self._db.transaction() as session:
            if request_id and (existing := await store.api_key_by_request(session, tenant_id, request_id)):
                return pb.CreateApiKeyResponse(api_key=api_key_to_proto(existing))
            key, secret = _new_api_key(tenant_id, request.api_key.display_name[:200], roles, request_id)
            await store.add_api_key(session, key)
        return pb.CreateApiKeyResponse(api_key=api_key_to_proto(key), api_key_secret=secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        (tenant_id,) = parse(request.parent, "parent", "tenants")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        async with self._db.transaction() as session:
            rows = await store.list_api_keys(session, tenant_id, page.offset, page.limit)
        page_rows, token = page.split(rows)
        return pb.ListApiKeysResponse(
            api_keys=[api_key_to_proto(k) for k in page_rows], next_page_token=token
        )

    async def DeleteApiKey(
        self, request: pb.DeleteApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, key_id = parse(request.name, "name", "tenants", "apiKeys")
        require_tenant(tenant_id)
        async with self._db.transaction() as session:
            if not await store.delete_api_key(session, tenant_id, key_id):
                raise errors.api_key_not_found(request.name)
        return empty_pb2.Empty()

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueTokenResponse:
        if request.grant_type != "client_credentials":
            raise errors.unsupported_grant_type(request.grant_type)
        if not request.client_secret:
            raise invalid("client_secret", "is required", reason="INVALID_REQUEST")
        key_id = tokens.split_api_key_secret(request.client_secret)
        async with self._db.transaction() as session:
            key = await store.get_api_key(session, key_id) if key_id else None
        if key is None or not tokens.secrets_match(request.client_secret, key.secret_sha256):
            raise errors.invalid_client()
        name = f"tenants/{key.tenant_id}/apiKeys/{key.id}"
        if request.client_id and request.client_id not in (key.id, name):
            raise errors.invalid_client()
        roles = list(key.roles)
        if request.scope:
            asked = request.scope.split()
            if not set(asked) <= set(roles):
                raise invalid("scope", f"may only name the key's roles {roles}", reason="INVALID_SCOPE")
            roles = asked
        token, lifetime = tokens.sign(
            await self._active_key(),
            issuer=self._issuer,
            audience=self._audience,
            subject=name,
            tenant=key.tenant_id,
            roles=roles,
            now=utcnow(),
        )
        return pb.IssueTokenResponse(
            access_token=token, token_type="Bearer", expires_in=lifetime, scope=" ".join(roles)
        )

    async def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> res.JsonWebKeySet:
        jwks = await self.jwks()
        return res.JsonWebKeySet(keys=[res.JsonWebKey(**k) for k in jwks["keys"]])

    async def GetOpenIdConfiguration(
        self, request: pb.GetOpenIdConfigurationRequest, context: grpc.aio.ServicerContext
    ) -> res.OpenIdConfiguration:
        return res.OpenIdConfiguration(
            issuer=self._issuer,
            jwks_uri=f"{self._issuer}/.well-known/jwks.json",
            token_endpoint=f"{self._issuer}/v1/oauth2/token",
            grant_types_supported=["client_credentials"],
            id_token_signing_alg_values_supported=["EdDSA"],
            response_types_supported=["token"],
            subject_types_supported=["public"],
        )
