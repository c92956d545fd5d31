"""AuthService: protos in, domain calls, protos out."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2

from orchestrall.auth.v1 import auth_service_pb2 as pb
from orchestrall.auth.v1 import auth_service_pb2_grpc as pb_grpc
from orchestrall.auth.v1 import resources_pb2 as res
from services.auth import errors, passwords, store, tokens
from services.auth.keyring import KeyRing
from services.auth.models import ApiKeyRow, AuditEventRow, ServiceAccountRow, TenantRow, UserRow
from services.kit.audit import note_resource
from services.kit.auth import current_principal, require_tenant
from services.kit.db import Database, Tx, write_per_tenant
from services.kit.errors import FieldViolation, InvalidArgument, PermissionDenied, invalid
from services.kit.names import TENANT, ResourceName, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.roles import ROLE_ORDER, may_grant
from services.kit.timestamps import as_utc, from_timestamp, to_timestamp, utcnow

FIRST_KEY_ROLES = ["owner"]
#: How clients authenticate at the token endpoint (RFC 8414 section 2): HTTP Basic and the form
#: body (RFC 6749 section 2.3.1), both served by services.auth.oauth.
TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
API_KEY = ResourceName.of(res.ApiKey)
USER = ResourceName.of(res.User)
SERVICE_ACCOUNT = ResourceName.of(res.ServiceAccount)
AUDIT_EVENT = ResourceName.of(res.AuditEvent)
# A deliberately loose shape check; deliverability is the mail system's business (RFC 5321).
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def tenant_to_proto(tenant: TenantRow) -> res.Tenant:
    """Maps a tenant row to its resource."""
    return res.Tenant(
        name=TENANT.format(tenant.id),
        display_name=tenant.display_name,
        industry=tenant.industry,
        create_time=to_timestamp(tenant.create_time),
    )


def api_key_to_proto(key: ApiKeyRow) -> res.ApiKey:
    """Maps an API key row to its resource (never the secret)."""
    return res.ApiKey(
        name=API_KEY.format(key.tenant_id, key.id),
        display_name=key.display_name,
        roles=key.roles,
        key_prefix=f"{tokens.KEY_PREFIX}{key.id[:8]}",
        create_time=to_timestamp(key.create_time),
        expire_time=to_timestamp(key.expire_time),
        last_use_time=to_timestamp(key.last_use_time),
    )


def user_to_proto(user: UserRow) -> res.User:
    """Maps a user row to its resource (never the password hash)."""
    return res.User(
        name=USER.format(user.tenant_id, user.id),
        email=user.email,
        display_name=user.display_name,
        roles=user.roles,
        create_time=to_timestamp(user.create_time),
    )


def service_account_to_proto(account: ServiceAccountRow) -> res.ServiceAccount:
    """Maps a service account row to its resource (never the secret)."""
    return res.ServiceAccount(
        name=SERVICE_ACCOUNT.format(account.tenant_id, account.id),
        display_name=account.display_name,
        roles=account.roles,
        create_time=to_timestamp(account.create_time),
    )


def audit_event_to_proto(row: AuditEventRow) -> res.AuditEvent:
    """Maps an audit event row to its resource."""
    return res.AuditEvent(
        name=AUDIT_EVENT.format(row.tenant_id, row.id),
        time=to_timestamp(row.time),
        subject=row.subject,
        principal_kind=row.principal_kind,
        method=row.method,
        resource=row.resource,
        outcome=row.outcome,
        service=row.service,
    )


def _check_roles(roles: list[str], field: str) -> list[FieldViolation]:
    """Violations for unknown roles; raises when the caller may not grant them."""
    unknown = sorted(set(roles) - set(ROLE_ORDER))
    if unknown:
        return [FieldViolation(field, f"unknown roles {unknown}; known: {list(ROLE_ORDER)}")]
    caller = current_principal()
    if caller.kind == "user" and not may_grant(caller.roles, roles):
        raise PermissionDenied(
            "ROLE_NOT_GRANTABLE",
            f"roles {list(caller.roles)} may not grant {roles}",
            metadata={"roles": ",".join(roles)},
        )
    return []


def _new_api_key(
    tenant_id: str,
    display_name: str,
    roles: list[str],
    request_id: str | None,
    expire_time: dt.datetime | None,
) -> tuple[ApiKeyRow, str]:
    key_id = new_id().replace("-", "")
    secret = tokens.new_api_key_secret(key_id)
    row = ApiKeyRow(
        id=key_id,
        tenant_id=tenant_id,
        display_name=display_name,
        roles=roles,
        secret_sha256=tokens.secret_sha256(secret),
        request_id=request_id,
        create_time=utcnow(),
        expire_time=expire_time,
        last_use_time=None,
    )
    return row, secret


@dataclass(frozen=True)
class Grant:
    """Who a token is for, as a grant established it."""

    subject: str
    tenant_id: str
    roles: list[str]
    not_after: dt.datetime | None = None


def _require_outranks(target_roles: list[str], name: str) -> None:
    """Refuses to remove a credential whose roles the caller could not grant (an admin removing an owner)."""
    caller = current_principal()
    if caller.kind == "user" and not may_grant(caller.roles, target_roles):
        raise PermissionDenied(
            "ROLE_NOT_GRANTABLE",
            f"roles {list(caller.roles)} may not remove {name}, which holds {target_roles}",
            metadata={"name": name},
        )


def _delete_api_key(tx: Tx, key_id: str, name: str) -> bool:
    key = store.get_api_key(tx, key_id)
    if key is None:
        return False
    _require_outranks(key.roles, name)
    return store.delete_api_key(tx, key_id)


def _delete_user(tx: Tx, user_id: str, name: str) -> bool:
    user = store.get_user(tx, user_id)
    if user is None:
        return False
    _require_outranks(user.roles, name)
    return store.delete_user(tx, user_id)


def _delete_service_account(tx: Tx, account_id: str, name: str) -> bool:
    account = store.get_service_account(tx, account_id)
    if account is None:
        return False
    _require_outranks(account.roles, name)
    return store.delete_service_account(tx, account_id)


class AuthService(pb_grpc.AuthServiceServicer):
    """Tenants, principals, tokens, signing keys and the audit log.

    Args:
        db: The auth database.
        keys: The signing keys, held in memory.
        issuer: ``iss`` of issued tokens, also the OIDC issuer URL.
        audience: ``aud`` of issued tokens.
    """

    def __init__(self, db: Database, keys: KeyRing, issuer: str, audience: str) -> None:
        self._db = db
        self._keys = keys
        self._issuer = issuer.rstrip("/")
        self._audience = audience
        self._discovery = res.OpenIdConfiguration(
            issuer=self._issuer,
            jwks_uri=f"{self._issuer}/.well-known/jwks.json",
            token_endpoint=f"{self._issuer}/v1/oauth2/token",
            grant_types_supported=["client_credentials", "password"],
            id_token_signing_alg_values_supported=["EdDSA"],
            response_types_supported=["token"],
            subject_types_supported=["public"],
            token_endpoint_auth_methods_supported=list(TOKEN_ENDPOINT_AUTH_METHODS),
            scopes_supported=list(ROLE_ORDER),
        )

    # Signing keys -------------------------------------------------------------------------------

    async def RotateSigningKey(
        self, request: pb.RotateSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateSigningKeyResponse:
        new, previous = await self._keys.rotate()
        return pb.RotateSigningKeyResponse(
            kid=new.kid,
            activate_time=to_timestamp(new.activate_time),
            previous_kid=previous.kid if previous else "",
        )

    async def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> res.JsonWebKeySet:
        return res.JsonWebKeySet(keys=[res.JsonWebKey(**k) for k in self._keys.published()])

    async def GetOpenIdConfiguration(
        self, request: pb.GetOpenIdConfigurationRequest, context: grpc.aio.ServicerContext
    ) -> res.OpenIdConfiguration:
        return self._discovery

    # Tenants ------------------------------------------------------------------------------------

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
        name = TENANT.format(tenant_id)
        note_resource(name)
        tenant = TenantRow(
            id=tenant_id,
            display_name=request.tenant.display_name.strip(),
            industry=request.tenant.industry.strip()[:100],
            create_time=utcnow(),
        )
        key, secret = _new_api_key(tenant_id, "owner (created with the tenant)", FIRST_KEY_ROLES, None, None)
        if not await self._db.write(tenant_id, store.create_tenant, tenant, key):
            raise errors.tenant_exists(name)
        return pb.CreateTenantResponse(
            tenant=tenant_to_proto(tenant), api_key=api_key_to_proto(key), api_key_secret=secret
        )

    async def GetTenant(self, request: pb.GetTenantRequest, context: grpc.aio.ServicerContext) -> res.Tenant:
        (tenant_id,) = TENANT.parse(request.name, "name")
        require_tenant(tenant_id)
        tenant = await self._db.read(tenant_id, store.get_tenant)
        if tenant is None:
            raise errors.tenant_not_found(request.name)
        return tenant_to_proto(tenant)

    # API keys -----------------------------------------------------------------------------------

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        roles = list(request.api_key.roles)
        violations = (
            _check_roles(roles, "api_key.roles")
            if roles
            else [FieldViolation("api_key.roles", f"is required: one or more of {list(ROLE_ORDER)}")]
        )
        expire_time = (
            from_timestamp(request.api_key.expire_time) if request.api_key.HasField("expire_time") else None
        )
        if expire_time is not None and expire_time <= utcnow():
            violations.append(FieldViolation("api_key.expire_time", "must be in the future"))
        if violations:
            raise InvalidArgument(violations)
        request_id = request.request_id or None
        key, secret = _new_api_key(tenant_id, request.api_key.display_name, roles, request_id, expire_time)
        note_resource(API_KEY.format(tenant_id, key.id))
        created = await self._db.write(tenant_id, store.create_api_key, key)
        if created is not key:  # a retry: the key exists, its secret was shown once already
            return pb.CreateApiKeyResponse(api_key=api_key_to_proto(created))
        return pb.CreateApiKeyResponse(api_key=api_key_to_proto(key), api_key_secret=secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_api_keys, page)
        keys, token = listing.messages(api_key_to_proto)
        return pb.ListApiKeysResponse(api_keys=keys, next_page_token=token)

    async def DeleteApiKey(
        self, request: pb.DeleteApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, key_id = API_KEY.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, _delete_api_key, key_id, request.name):
            raise errors.not_found("API_KEY_NOT_FOUND", request.name)
        return empty_pb2.Empty()

    # Users --------------------------------------------------------------------------------------

    async def CreateUser(self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext) -> res.User:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        user = request.user
        roles = list(user.roles) or ["viewer"]
        violations = _check_roles(roles, "user.roles")
        if request.user_id:
            try:
                validate_id(request.user_id, "user_id")
            except InvalidArgument as error:
                violations += error.violations
        email = user.email.strip().lower()
        if not _EMAIL.match(email) or len(email) > 320:
            violations.append(FieldViolation("user.email", "must be an email address"))
        if not passwords.MIN_LENGTH <= len(user.password) <= passwords.MAX_LENGTH:
            violations.append(
                FieldViolation(
                    "user.password",
                    f"must be {passwords.MIN_LENGTH}-{passwords.MAX_LENGTH} characters (NIST SP 800-63B)",
                )
            )
        if violations:
            raise InvalidArgument(violations)
        row = UserRow(
            tenant_id=tenant_id,
            id=request.user_id or new_id(),
            email=email,
            display_name=user.display_name[:200],
            roles=roles,
            password_hash=passwords.hash_password(user.password),
            create_time=utcnow(),
        )
        name = USER.format(tenant_id, row.id)
        note_resource(name)
        if not await self._db.write(tenant_id, store.add_user, row):
            raise errors.already_exists("USER_ALREADY_EXISTS", f"{name} ({email})")
        return user_to_proto(row)

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_users, page)
        users, token = listing.messages(user_to_proto)
        return pb.ListUsersResponse(users=users, next_page_token=token)

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, user_id = USER.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, _delete_user, user_id, request.name):
            raise errors.not_found("USER_NOT_FOUND", request.name)
        return empty_pb2.Empty()

    # Service accounts ---------------------------------------------------------------------------

    async def CreateServiceAccount(
        self, request: pb.CreateServiceAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateServiceAccountResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        roles = list(request.service_account.roles) or ["developer"]
        violations = _check_roles(roles, "service_account.roles")
        if request.service_account_id:
            try:
                validate_id(request.service_account_id, "service_account_id")
            except InvalidArgument as error:
                violations += error.violations
        if violations:
            raise InvalidArgument(violations)
        secret = tokens.new_service_account_secret()
        row = ServiceAccountRow(
            tenant_id=tenant_id,
            id=request.service_account_id or new_id(),
            display_name=request.service_account.display_name[:200],
            roles=roles,
            secret_sha256=tokens.secret_sha256(secret),
            create_time=utcnow(),
        )
        name = SERVICE_ACCOUNT.format(tenant_id, row.id)
        note_resource(name)
        if not await self._db.write(tenant_id, store.add_service_account, row):
            raise errors.already_exists("SERVICE_ACCOUNT_ALREADY_EXISTS", name)
        return pb.CreateServiceAccountResponse(
            service_account=service_account_to_proto(row), client_secret=secret
        )

    async def ListServiceAccounts(
        self, request: pb.ListServiceAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListServiceAccountsResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_service_accounts, page)
        accounts, token = listing.messages(service_account_to_proto)
        return pb.ListServiceAccountsResponse(service_accounts=accounts, next_page_token=token)

    async def DeleteServiceAccount(
        self, request: pb.DeleteServiceAccountRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, account_id = SERVICE_ACCOUNT.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, _delete_service_account, account_id, request.name):
            raise errors.not_found("SERVICE_ACCOUNT_NOT_FOUND", request.name)
        return empty_pb2.Empty()

    # Tokens -------------------------------------------------------------------------------------

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueTokenResponse:
        if request.grant_type == "client_credentials":
            grant = await self._client_credentials(request)
        elif request.grant_type == "password":
            grant = await self._password(request)
        else:
            raise errors.unsupported_grant_type(request.grant_type)
        roles = grant.roles
        if request.scope:
            asked = request.scope.split()
            if not set(asked) <= set(roles):
                raise invalid(
                    "scope", f"may only name the credential's roles {roles}", reason="INVALID_SCOPE"
                )
            roles = asked
        tenant = await self._db.read(grant.tenant_id, store.get_tenant)
        signer = await self._keys.signer()
        token, lifetime = tokens.sign(
            signer.key,
            signer.private_key,
            issuer=self._issuer,
            audience=self._audience,
            subject=grant.subject,
            tenant=grant.tenant_id,
            roles=roles,
            now=utcnow(),
            not_after=grant.not_after,
            industry=tenant.industry if tenant is not None else "",
        )
        return pb.IssueTokenResponse(
            access_token=token, token_type="Bearer", expires_in=lifetime, scope=" ".join(roles)
        )

    async def _client_credentials(self, request: pb.IssueTokenRequest) -> Grant:
        """An API key (secret alone, or with its name as client_id) or a service account (name + secret)."""
        if not request.client_secret:
            raise invalid("client_secret", "is required for client_credentials", reason="INVALID_REQUEST")
        now = utcnow()
        if request.client_id.startswith("tenants/") and "/serviceAccounts/" in request.client_id:
            tenant_id, account_id = SERVICE_ACCOUNT.parse(request.client_id, "client_id")
            note_resource(request.client_id)
            account = await self._db.read(tenant_id, store.get_service_account, account_id)
            if account is None or not tokens.secrets_match(request.client_secret, account.secret_sha256):
                raise errors.invalid_client()
            return Grant(request.client_id, tenant_id, list(account.roles))
        key_id = tokens.split_api_key_secret(request.client_secret)
        key = await self._db.system(store.api_key_by_id, key_id) if key_id else None
        if key is None or not tokens.secrets_match(request.client_secret, key.secret_sha256):
            raise errors.invalid_client()
        name = API_KEY.format(key.tenant_id, key.id)
        expire_time = as_utc(key.expire_time) if key.expire_time else None
        if (request.client_id and request.client_id not in (key.id, name)) or (
            expire_time is not None and expire_time <= now
        ):
            raise errors.invalid_client()
        note_resource(name)
        await self._db.write(key.tenant_id, store.touch_api_key, key.id, now)
        return Grant(name, key.tenant_id, list(key.roles), expire_time)

    async def _password(self, request: pb.IssueTokenRequest) -> Grant:
        """A user's email and password in a tenant (RFC 6749 section 4.3)."""
        tenant = request.tenant.removeprefix("tenants/")
        note_resource(TENANT.format(tenant))
        if not tenant or not request.username or not request.password:
            raise invalid(
                "username", "password grant needs username, password and tenant", reason="INVALID_REQUEST"
            )
        user = await self._db.read(tenant, store.user_by_email, request.username.strip().lower())
        if (
            not passwords.verify_password(user.password_hash if user else None, request.password)
            or user is None
        ):
            raise errors.invalid_grant()
        name = USER.format(user.tenant_id, user.id)
        note_resource(name)
        return Grant(name, user.tenant_id, list(user.roles))

    # Audit log ----------------------------------------------------------------------------------

    async def store_audit_events(self, rows: Sequence[dict[str, Any]]) -> int:
        """Records relayed audit events (idempotent by ID); also this service's own relay target.

        One transaction; each tenant's events are inserted with that tenant bound
        (:func:`~services.kit.db.write_per_tenant`).
        """
        return await self._db.write(
            None, write_per_tenant, list(rows), lambda row: str(row["tenant_id"]), store.add_audit_events
        )

    async def IngestAuditEvents(
        self, request: pb.IngestAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestAuditEventsResponse:
        if not 1 <= len(request.audit_events) <= 1000:
            raise invalid("audit_events", "must hold 1-1000 events")
        service = current_principal().subject  # the relaying service's own identity, not a claim in the body
        rows = []
        for i, event in enumerate(request.audit_events):
            tenant_id, event_id = AUDIT_EVENT.parse(event.name, f"audit_events[{i}].name")
            rows.append(
                {
                    "tenant_id": tenant_id,
                    "id": event_id,
                    "time": from_timestamp(event.time),
                    "subject": event.subject[:300],
                    "principal_kind": event.principal_kind[:20],
                    "method": event.method[:200],
                    "resource": event.resource[:500],
                    "outcome": event.outcome[:40],
                    "service": service,
                }
            )
        return pb.IngestAuditEventsResponse(accepted_count=await self.store_audit_events(rows))

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        start = from_timestamp(request.start_time) if request.HasField("start_time") else None
        end = from_timestamp(request.end_time) if request.HasField("end_time") else None
        page = page_of(
            request.page_size,
            request.page_token,
            request.parent,
            str(start),
            str(end),
            request.subject,
            request.resource,
        )
        listing = await self._db.read(
            tenant_id,
            store.list_audit_events,
            page,
            start=start,
            end=end,
            subject=request.subject,
            resource=request.resource,
        )
        events, token = listing.messages(audit_event_to_proto)
        return pb.ListAuditEventsResponse(audit_events=events, next_page_token=token)
