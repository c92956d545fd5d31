"""SQL of the flag service, through the kit's repository.

Every flag query filters by the transaction's tenant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.flag.models import (
    Flag,
    FlagChangeSequence,
    FlagRevision,
    FlagRevisionRow,
    FlagRow,
    FlagSet,
    FlagUsage,
    FlagUsageRow,
)
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import Order, Repository, table_of
from services.kit.timestamps import utcnow

FLAGS = Repository(Flag, FlagRow, order=(Order("key"),))
_FLAGS = FLAGS.table
REVISIONS = Repository(FlagRevision, FlagRevisionRow, order=(Order("sequence", descending=True),))
_REVISIONS = REVISIONS.table
_SETS = table_of(FlagSet)
USAGE = Repository(FlagUsage, FlagUsageRow, order=(Order("hour"),))
_USAGE = USAGE.table
_SEQUENCE = table_of(FlagChangeSequence)
_NEXT_CHANGE = (
    update(_SEQUENCE)
    .where(_SEQUENCE.c.id == 1)
    .values(value=_SEQUENCE.c.value + 1)
    .returning(_SEQUENCE.c.value)
)


def _changed(tx: Tx) -> None:
    """Records that the tenant's flag set changed: the next number of the global change sequence."""
    revision = tx.execute(_NEXT_CHANGE).scalar_one()
    statement = postgresql.insert(_SETS) if tx.dialect == "postgresql" else sqlite.insert(_SETS)
    values = {"tenant_id": tx.tenant_id, "revision": revision, "update_time": utcnow()}
    tx.execute(
        statement.values(values).on_conflict_do_update(
            index_elements=[_SETS.c.tenant_id],
            set_={"revision": statement.excluded.revision, "update_time": statement.excluded.update_time},
        )
    )


def add_flag(tx: Tx, flag: FlagRow) -> bool:
    """Inserts a flag; returns False when the tenant has a flag with that key (nothing is written then)."""
    if not FLAGS.insert(tx, flag):
        return False
    _changed(tx)
    return True


def get_flag(tx: Tx, key: str, *, lock: bool = False) -> FlagRow | None:
    """Returns the tenant's flag with that key, or None (``lock``: until the transaction ends)."""
    return FLAGS.get(tx, key, lock=lock)


def list_flags(tx: Tx, page: Page) -> Listing[FlagRow]:
    """Returns a page of the tenant's flags, ordered by key, and whether more follow."""
    return FLAGS.list_page(tx, page)


def update_flag(tx: Tx, key: str, values: Mapping[str, Any]) -> FlagRow | None:
    """Writes changed fields of a flag; returns it, or None when there is none."""
    updated = FLAGS.update(tx, (key,), values)
    if updated is not None:
        _changed(tx)
    return updated


def delete_flag(tx: Tx, key: str) -> bool:
    """Deletes a flag of the tenant and its usage counts; returns False when there was none."""
    if not FLAGS.delete(tx, key):
        return False
    tx.execute(delete(_USAGE).where(_USAGE.c.tenant_id == tx.tenant_id, _USAGE.c.flag_key == key))
    _changed(tx)
    return True


def add_usage(tx: Tx, rows: list[FlagUsageRow]) -> None:
    """Adds evaluation counts of any tenants' flags to the stored ones (system work: a replica's flush).

    Each row's ``count`` is added to its hour's, and ``last_evaluate_time`` raised to the row's.
    """
    if not rows:
        return
    postgres = tx.dialect == "postgresql"
    statement = postgresql.insert(_USAGE) if postgres else sqlite.insert(_USAGE)
    latest = func.greatest if postgres else func.max  # SQLite's max() of two values is scalar
    tx.execute(
        statement.on_conflict_do_update(
            index_elements=list(_USAGE.primary_key.columns),
            set_={
                "count": _USAGE.c.count + statement.excluded.count,
                "last_evaluate_time": latest(
                    _USAGE.c.last_evaluate_time, statement.excluded.last_evaluate_time
                ),
            },
        ),
        [USAGE.values(row) for row in rows],
    )
    tx.changed = True


def usage_of(tx: Tx, key: str, start: dt.datetime, end: dt.datetime) -> list[FlagUsageRow]:
    """Returns the stored counts of the tenant's flag ``key`` in hours ``start`` to before ``end``."""
    return USAGE.find_all(tx, _USAGE.c.flag_key == key, _USAGE.c.hour >= start, _USAGE.c.hour < end)


def last_evaluations(tx: Tx, keys: Collection[str] | None = None) -> dict[str, dt.datetime]:
    """Returns flag key -> the time of its last stored evaluation, for the tenant's flags (of ``keys``)."""
    query = (
        select(_USAGE.c.flag_key, func.max(_USAGE.c.last_evaluate_time))
        .where(_USAGE.c.tenant_id == tx.tenant_id)
        .group_by(_USAGE.c.flag_key)
    )
    if keys is not None:
        query = query.where(_USAGE.c.flag_key.in_(list(keys)))
    return {key: last for key, last in tx.execute(query)}


def usage_since(tx: Tx, start: dt.datetime) -> list[FlagUsageRow]:
    """Returns the tenant's stored counts of every flag from the hour ``start`` on."""
    return USAGE.find_all(tx, _USAGE.c.hour >= start)


def add_flag_revision(tx: Tx, revision: FlagRevisionRow) -> bool:
    """Inserts a flag revision; returns False when one of its unique keys is taken (nothing is written)."""
    return REVISIONS.insert(tx, revision)


def get_flag_revision(tx: Tx, key: str, revision_id: str) -> FlagRevisionRow | None:
    """Returns a revision of the tenant's flag ``key`` (also of a deleted flag), or None."""
    return REVISIONS.get(tx, key, revision_id)


def latest_flag_revision(tx: Tx, key: str) -> FlagRevisionRow | None:
    """Returns the newest revision of the tenant's flag ``key``, or None when the key never had one."""
    return REVISIONS.find(tx, _REVISIONS.c.flag_key == key)


def flag_revision_of_request(tx: Tx, key: str, request_id: str) -> FlagRevisionRow | None:
    """Returns the revision of flag ``key`` that the call with ``request_id`` made, or None."""
    return REVISIONS.find(tx, _REVISIONS.c.flag_key == key, _REVISIONS.c.request_id == request_id)


def flag_revisions_of_call(tx: Tx, request_id: str) -> list[FlagRevisionRow]:
    """Returns every revision, of any of the tenant's flags, that the call with ``request_id`` made."""
    return REVISIONS.find_all(tx, _REVISIONS.c.request_id == request_id)


def flag_revision_numbered(tx: Tx, key: str, sequence: int) -> FlagRevisionRow | None:
    """Returns the revision of flag ``key`` with number ``sequence``, or None."""
    return REVISIONS.find(tx, _REVISIONS.c.flag_key == key, _REVISIONS.c.sequence == sequence)


def list_flag_revisions(tx: Tx, key: str, page: Page) -> Listing[FlagRevisionRow] | None:
    """Returns a page of the revisions of flag ``key``, newest first; None when the key never had one."""
    if latest_flag_revision(tx, key) is None:
        return None
    return REVISIONS.list_page(tx, page, _REVISIONS.c.flag_key == key)


def tenant_flags(tx: Tx) -> list[FlagRow]:
    """Returns every flag of the transaction's tenant."""
    return FLAGS.find_all(tx)


def tenant_revision(tx: Tx) -> int:
    """Returns the revision of the transaction's tenant's flag set (0 before its first change)."""
    query = select(_SETS.c.revision).where(_SETS.c.tenant_id == tx.tenant_id)
    return int(tx.execute(query).scalar() or 0)


def changes_since(tx: Tx, revision: int) -> dict[str, int]:
    """Returns the tenants whose flag sets changed after ``revision``, with their revisions (system work)."""
    query = select(_SETS.c.tenant_id, _SETS.c.revision).where(_SETS.c.revision > revision)
    return {tenant: number for tenant, number in tx.execute(query)}


def latest_revision(tx: Tx) -> int:
    """Returns the number of the last change to any tenant's flags (0 before the first)."""
    return int(tx.execute(select(_SEQUENCE.c.value).where(_SEQUENCE.c.id == 1)).scalar_one())


def flags_of(tx: Tx, tenants: Collection[str] | None) -> list[FlagRow]:
    """Returns the flags of ``tenants``, or of every tenant for None (system work: loading replicas)."""
    query = select(*_FLAGS.c)
    if tenants is not None:
        query = query.where(_FLAGS.c.tenant_id.in_(list(tenants)))
    return FLAGS.records(tx.execute(query).all())
