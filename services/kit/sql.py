"""SQL helpers that several stores need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


async def insert_ignoring_duplicates(
    session: AsyncSession,
    model: type[DeclarativeBase],
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
) -> int:
    """Inserts ``rows``, skipping those whose ``keys`` exist already (or repeat within ``rows``).

    One ``INSERT ... ON CONFLICT DO NOTHING`` (PostgreSQL or SQLite), so concurrent
    deliveries of the same row record it once: the basis of idempotent ingestion.

    Returns:
        How many rows were inserted.
    """
    if not rows:
        return 0
    table = model.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(list(rows)).on_conflict_do_nothing(index_elements=list(keys))
    inserted = await session.execute(statement.returning(*(table.c[k] for k in keys)))
    return len(inserted.all())
