"""SQL of the flag service. Every query filters by ``tenant_id``."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.flag.models import Flag
from services.kit.db import insert_unique


async def add_flag(session: AsyncSession, flag: Flag) -> bool:
    """Insert a flag; return False when the tenant has a flag with that key (nothing is written then)."""
    return await insert_unique(session, flag)


async def get_flag(session: AsyncSession, tenant_id: str, key: str, *, lock: bool = False) -> Flag | None:
    """Return the tenant's flag with that key, or None.

    Args:
        session: The transaction.
        tenant_id: The caller's tenant.
        key: The flag key.
        lock: Lock the row until the transaction ends (``SELECT ... FOR UPDATE`` on
            PostgreSQL; SQLite serializes writers anyway).
    """
    query = select(Flag).where(Flag.tenant_id == tenant_id, Flag.key == key)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_flags(session: AsyncSession, tenant_id: str, offset: int, limit: int) -> list[Flag]:
    """Return a page of the tenant's flags, ordered by key."""
    query = select(Flag).where(Flag.tenant_id == tenant_id).order_by(Flag.key).offset(offset).limit(limit)
    return list((await session.execute(query)).scalars())


async def delete_flag(session: AsyncSession, tenant_id: str, key: str) -> bool:
    """Delete a flag of the tenant; return False when there was none."""
    result = await session.execute(delete(Flag).where(Flag.tenant_id == tenant_id, Flag.key == key))
    return bool(result.rowcount)  # type: ignore[attr-defined]
