"""SQL of the auth service. Every tenant-owned query filters by ``tenant_id``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import ApiKey, AuditEvent, ServiceAccount, SigningKey, Tenant, User
from services.kit.db import insert_idempotent, insert_unique
from services.kit.sql import insert_ignoring_duplicates


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    """The tenant with that ID, or None."""
    return await session.get(Tenant, tenant_id)


async def add_tenant(session: AsyncSession, tenant: Tenant) -> bool:
    """Inserts a tenant; False when the ID is taken (nothing is written then)."""
    return await insert_unique(session, tenant)


async def create_api_key(session: AsyncSession, key: ApiKey) -> ApiKey:
    """Inserts an API key, or returns the one an earlier request with its ``request_id`` made."""
    rid = key.request_id

    async def earlier() -> ApiKey | None:
        return await api_key_by_request(session, key.tenant_id, rid) if rid else None

    created = await insert_idempotent(session, key, earlier)
    assert created is not None, "key IDs are UUIDs"
    return created


async def api_key_by_request(session: AsyncSession, tenant_id: str, request_id: str) -> ApiKey | None:
    """The key created earlier with this idempotency key, or None."""
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.request_id == request_id)
    return (await session.execute(query)).scalar_one_or_none()


async def get_api_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    """Looks a key up by ID across tenants (the token endpoint knows no tenant yet)."""
    return await session.get(ApiKey, key_id)


async def list_api_keys(session: AsyncSession, tenant_id: str, offset: int, limit: int) -> list[ApiKey]:
    """The tenant's keys, newest first."""
    query = (
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id)
        .order_by(ApiKey.create_time.desc(), ApiKey.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def delete_api_key(session: AsyncSession, tenant_id: str, key_id: str) -> bool:
    """Deletes a key of the tenant; False when there was none."""
    result = await session.execute(delete(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def published_keys(session: AsyncSession, now: dt.datetime) -> list[SigningKey]:
    """Keys in the JWKS at ``now`` (created, not expired), newest first."""
    query = (
        select(SigningKey)
        .where(
            SigningKey.create_time <= now, (SigningKey.expire_time.is_(None)) | (SigningKey.expire_time > now)
        )
        .order_by(SigningKey.create_time.desc())
    )
    return list((await session.execute(query)).scalars())


async def unexpired_keys(session: AsyncSession, now: dt.datetime) -> list[SigningKey]:
    """Keys not yet expired, including those published in the future (locked for rotation)."""
    query = (
        select(SigningKey)
        .where((SigningKey.expire_time.is_(None)) | (SigningKey.expire_time > now))
        .with_for_update()
    )
    return list((await session.execute(query)).scalars())


async def add_signing_key(session: AsyncSession, key: SigningKey) -> None:
    """Inserts a signing key."""
    session.add(key)
    await session.flush()


async def touch_api_key(session: AsyncSession, key: ApiKey, now: dt.datetime) -> None:
    """Records that a key obtained a token."""
    await session.execute(
        update(ApiKey).where(ApiKey.tenant_id == key.tenant_id, ApiKey.id == key.id).values(last_use_time=now)
    )


async def add_user(session: AsyncSession, user: User) -> bool:
    """Inserts a user; False when the ID or email is taken in the tenant."""
    return await insert_unique(session, user)


async def user_by_email(session: AsyncSession, tenant_id: str, email: str) -> User | None:
    """The tenant's user with that (lower-cased) email, or None."""
    query = select(User).where(User.tenant_id == tenant_id, User.email == email)
    return (await session.execute(query)).scalar_one_or_none()


async def list_users(session: AsyncSession, tenant_id: str, offset: int, limit: int) -> list[User]:
    """The tenant's users, newest first."""
    query = (
        select(User)
        .where(User.tenant_id == tenant_id)
        .order_by(User.create_time.desc(), User.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def get_user(session: AsyncSession, tenant_id: str, user_id: str) -> User | None:
    """The tenant's user, or None."""
    return await session.get(User, (tenant_id, user_id))


async def delete_user(session: AsyncSession, tenant_id: str, user_id: str) -> bool:
    """Deletes a user of the tenant; False when there was none."""
    result = await session.execute(delete(User).where(User.tenant_id == tenant_id, User.id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_service_account(session: AsyncSession, account: ServiceAccount) -> bool:
    """Inserts a service account; False when the ID is taken in the tenant."""
    return await insert_unique(session, account)


async def get_service_account(
    session: AsyncSession, tenant_id: str, account_id: str
) -> ServiceAccount | None:
    """The tenant's service account, or None."""
    return await session.get(ServiceAccount, (tenant_id, account_id))


async def list_service_accounts(
    session: AsyncSession, tenant_id: str, offset: int, limit: int
) -> list[ServiceAccount]:
    """The tenant's service accounts, newest first."""
    query = (
        select(ServiceAccount)
        .where(ServiceAccount.tenant_id == tenant_id)
        .order_by(ServiceAccount.create_time.desc(), ServiceAccount.id)
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def delete_service_account(session: AsyncSession, tenant_id: str, account_id: str) -> bool:
    """Deletes a service account of the tenant; False when there was none."""
    result = await session.execute(
        delete(ServiceAccount).where(ServiceAccount.tenant_id == tenant_id, ServiceAccount.id == account_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_audit_events(session: AsyncSession, rows: Sequence[Mapping[str, object]]) -> int:
    """Records audit events, skipping IDs recorded before (at-least-once relays).

    Returns:
        How many were new.
    """
    return await insert_ignoring_duplicates(session, AuditEvent, rows, ["tenant_id", "id"])


async def list_audit_events(
    session: AsyncSession,
    tenant_id: str,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    subject: str,
    resource: str,
    offset: int,
    limit: int,
) -> list[AuditEvent]:
    """The tenant's audit events matching the filters, newest first."""
    query = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
    if start is not None:
        query = query.where(AuditEvent.time >= start)
    if end is not None:
        query = query.where(AuditEvent.time < end)
    if subject:
        query = query.where(AuditEvent.subject == subject)
    if resource:
        query = query.where(
            (AuditEvent.resource == resource) | AuditEvent.resource.startswith(resource + "/")
        )
    query = query.order_by(AuditEvent.time.desc(), AuditEvent.id).offset(offset).limit(limit)
    return list((await session.execute(query)).scalars())
