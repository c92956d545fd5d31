"""SQL of the auth service. Every tenant-owned query filters by ``tenant_id``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import ApiKey, SigningKey, Tenant
from services.kit.db import insert_unique


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    """The tenant with that ID, or None."""
    return await session.get(Tenant, tenant_id)


async def add_tenant(session: AsyncSession, tenant: Tenant) -> bool:
    """Inserts a tenant; False when the ID is taken (nothing is written then)."""
    return await insert_unique(session, tenant)


async def add_api_key(session: AsyncSession, key: ApiKey) -> None:
    """Inserts an API key."""
    session.add(key)
    await session.flush()


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
    """Signing keys not yet retired, newest first."""
    query = (
        select(SigningKey)
        .where((SigningKey.retire_time.is_(None)) | (SigningKey.retire_time > now))
        .order_by(SigningKey.create_time.desc())
    )
    return list((await session.execute(query)).scalars())


async def add_signing_key(session: AsyncSession, key: SigningKey) -> None:
    """Inserts a signing key."""
    session.add(key)
    await session.flush()
