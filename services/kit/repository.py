"""The one data path every store uses: tenant-scoped Core statements over one table.

A :class:`Repository` pairs a table (its ORM model, the schema's single source,
which Alembic compares migrations against) with a record type: a frozen
dataclass whose fields are the table's columns in order, checked when the
repository is made. Reads return records, writes take them, and no ORM session
is involved: statements are SQLAlchemy Core, built once here where they do not
depend on the request, so they hit SQLAlchemy's compiled cache (SQLAlchemy docs,
"SQL Compilation Caching"). Domain stores add their own queries next to the
standard ones (get, AIP-158 list, idempotent create by request id, update of
named fields, delete), on :attr:`Repository.table`.

Every query filters by the tenant the transaction is bound to
(:attr:`~services.kit.db.Tx.tenant_id`), which on PostgreSQL row-level security
enforces again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    Select,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.sqltypes import DateTime, Integer, String

from services.kit.db import Tx
from services.kit.errors import invalid
from services.kit.pagination import Listing, Page

R = TypeVar("R")


@dataclass(frozen=True)
class Order:
    """One column of a list order.

    Attributes:
        column: The column name.
        descending: Largest first.
    """

    column: str
    descending: bool = False


NEWEST_FIRST = (Order("create_time", descending=True),)


def table_of(model: type[DeclarativeBase]) -> Table:
    """Returns the Core table of an ORM model."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


class Repository(Generic[R]):
    """Standard tenant-scoped statements over one table.

    Args:
        model: The ORM model of the table.
        record: A dataclass whose fields are the table's columns, in order.
        order: The order lists return items in; the primary key is appended, so the
            order is total and keyset pages are exact.
        tenant_column: The column holding the tenant ID; None for a table that
            belongs to no tenant.

    Raises:
        TypeError: ``record``'s fields are not the table's columns in order.
    """

    def __init__(
        self,
        model: type[DeclarativeBase],
        record: type[R],
        *,
        order: Sequence[Order] = (),
        tenant_column: str | None = "tenant_id",
    ) -> None:
        table = table_of(model)
        columns = [c.key for c in table.columns]
        fields = [f.name for f in dataclasses.fields(record)]  # type: ignore[arg-type]
        if columns != fields:
            raise TypeError(f"{record.__name__} fields {fields} are not {table.name}'s columns {columns}")
        self.table = table
        self.record = record
        self._columns = columns
        self._tenant: Column[Any] | None = table.c[tenant_column] if tenant_column else None
        self._key = [c for c in table.primary_key.columns if c is not self._tenant]
        conditions = [c == bindparam(f"_k{i}") for i, c in enumerate(self._key)]
        if self._tenant is not None:
            conditions.insert(0, self._tenant == bindparam("_tenant"))
        by_key = and_(*conditions)
        query = select(*table.c).where(by_key)
        self._get = _Precompiled(query)
        self._get_for_update = _Precompiled(query.with_for_update())
        self._delete = delete(table).where(by_key)
        self._insert = {
            "postgresql": postgresql.insert(table).on_conflict_do_nothing().returning(*table.primary_key),
            "sqlite": sqlite.insert(table).on_conflict_do_nothing().returning(*table.primary_key),
        }
        self._request_scope = self._request_id_scope(table)
        names = [o.column for o in order]
        self._order = [(table.c[o.column], o.descending) for o in order] + [
            (c, False) for c in table.primary_key.columns if c.key not in names and c is not self._tenant
        ]

    def _request_id_scope(self, table: Table) -> list[Column[Any]]:
        """The columns that, with ``request_id``, identify an earlier request (its unique constraint)."""
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint) and "request_id" in constraint.columns:
                return [c for c in constraint.columns if c.key != "request_id" and c is not self._tenant]
        return []

    # Conversions ----------------------------------------------------------------------------------

    def values(self, record: R) -> dict[str, Any]:
        """Returns the column values of ``record``, by column name."""
        return {name: getattr(record, name) for name in self._columns}

    def records(self, rows: Sequence[Sequence[Any]]) -> list[R]:
        """Returns the records of rows selected with every column of the table, in order."""
        make = self.record
        return [make(*row) for row in rows]

    def _key_params(self, tx: Tx, key: Sequence[Any]) -> dict[str, Any]:
        if len(key) != len(self._key):
            raise TypeError(f"{self.table.name} is keyed by {[c.key for c in self._key]}, got {list(key)}")
        params = {f"_k{i}": value for i, value in enumerate(key)}
        if self._tenant is not None:
            params["_tenant"] = tx.tenant_id
        return params

    def _scoped(self, tx: Tx) -> list[ColumnElement[bool]]:
        return [] if self._tenant is None else [self._tenant == tx.tenant_id]

    # Standard statements --------------------------------------------------------------------------

    def get(self, tx: Tx, *key: Any, lock: bool = False) -> R | None:
        """Returns the tenant's row with primary key ``key``, or None.

        Args:
            tx: The transaction; its tenant scopes the query.
            *key: The primary key columns other than the tenant, in order.
            lock: Lock the row until the transaction ends (``SELECT ... FOR UPDATE`` on
                PostgreSQL; SQLite's write transactions hold the database lock anyway).
        """
        row = (self._get_for_update if lock else self._get).first(tx, self._key_params(tx, key))
        return None if row is None else self.record(*row)

    def find(self, tx: Tx, *where: ColumnElement[bool]) -> R | None:
        """Returns the first of the tenant's rows matching ``where`` (in the repository's order), or None."""
        query = select(*self.table.c).where(*self._scoped(tx), *where).order_by(*self._order_by())
        row = tx.execute(query.limit(1)).first()
        return None if row is None else self.record(*row)

    def find_all(self, tx: Tx, *where: ColumnElement[bool], limit: int | None = None) -> list[R]:
        """Returns the tenant's rows matching ``where``, in the repository's order, at most ``limit``."""
        query = select(*self.table.c).where(*self._scoped(tx), *where).order_by(*self._order_by())
        return self.records(tx.execute(query.limit(limit)).all())

    def _order_by(self) -> list[ColumnElement[Any]]:
        return [c.desc() if descending else c.asc() for c, descending in self._order]

    def list_page(self, tx: Tx, page: Page, *where: ColumnElement[bool]) -> Listing[R]:
        """Returns one page of the tenant's rows matching ``where``, in the repository's order.

        Returns:
            The page's records and whether more follow; :meth:`Listing.messages` makes the
            response's items and ``next_page_token``, bounded in bytes.

        Raises:
            InvalidArgument: The page token's sort key does not fit this list.
        """
        query = select(*self.table.c).where(*self._scoped(tx), *where)
        if page.after is not None:
            query = query.where(self._after(page.after))
        rows = tx.execute(query.order_by(*self._order_by()).limit(page.size + 1)).all()
        return Listing(self.records(rows[: page.size]), page, len(rows) > page.size, self._sort_key)

    def insert(self, tx: Tx, record: R) -> bool:
        """Inserts ``record`` unless a row with one of its unique keys exists.

        Returns:
            Whether it was inserted (``INSERT ... ON CONFLICT DO NOTHING``; nothing is
            written otherwise, and the transaction goes on).
        """
        inserted = tx.execute(self._insert[tx.dialect], self.values(record)).first() is not None
        tx.changed |= inserted
        return inserted

    def create(self, tx: Tx, record: R) -> R | None:
        """Inserts ``record`` unless an earlier request with the same ``request_id`` made a row first.

        Safe under concurrency: the unique ``(tenant, ..., request_id)`` key decides, so two
        racing retries make one row and both get it (AIP-155).

        Returns:
            ``record`` when inserted; the earlier request's row when its request ID was
            used before; None when another unique key (the resource ID) is taken.
        """
        if self.insert(tx, record):
            return record
        request_id = getattr(record, "request_id", None)
        if not request_id:
            return None
        scope = [column == getattr(record, column.key) for column in self._request_scope]
        return self.find(tx, *scope, self.table.c.request_id == request_id)

    def insert_many(self, tx: Tx, rows: Sequence[Mapping[str, Any]]) -> int:
        """Inserts rows in one batched statement, skipping those whose unique keys exist (or repeat).

        The rows must belong to the transaction's tenant on PostgreSQL (row-level
        security); SQLAlchemy sends them as multi-row ``INSERT ... ON CONFLICT DO
        NOTHING`` statements ("insertmanyvalues").

        Returns:
            How many rows were inserted.
        """
        if not rows:
            return 0
        inserted = len(tx.execute(self._insert[tx.dialect], list(rows)).all())
        tx.changed |= inserted > 0
        return inserted

    def update(self, tx: Tx, key: Sequence[Any], values: Mapping[str, Any]) -> R | None:
        """Sets ``values`` (column name to value) on the tenant's row with primary key ``key``.

        Returns:
            The updated record, or None when there is no such row.
        """
        params = self._key_params(tx, key)
        conditions = [c == params[f"_k{i}"] for i, c in enumerate(self._key)]
        query = update(self.table).where(*self._scoped(tx), *conditions).values(**values)
        row = tx.execute(query.returning(*self.table.c)).first()
        tx.changed |= row is not None
        return None if row is None else self.record(*row)

    def delete(self, tx: Tx, *key: Any) -> bool:
        """Deletes the tenant's row with primary key ``key``.

        Returns:
            Whether there was one.
        """
        return bool(tx.execute(self._delete, self._key_params(tx, key)).rowcount)

    # Keyset pages ---------------------------------------------------------------------------------

    def _sort_key(self, record: R) -> list[Any]:
        key = []
        for column, _ in self._order:
            value = getattr(record, column.key)
            key.append(value.isoformat() if isinstance(value, dt.datetime) else value)
        return key

    def _after(self, after: Sequence[Any]) -> ColumnElement[bool]:
        """Rows after the one with sort key ``after``: (a, b) after (x, y) is a > x, or a = x and b > y."""
        if len(after) != len(self._order):
            raise invalid("page_token", "is not a page token of this list")
        values = [_column_value(column, value) for (column, _), value in zip(self._order, after, strict=True)]
        alternatives = []
        for i, (column, descending) in enumerate(self._order):
            beyond = column < values[i] if descending else column > values[i]
            alternatives.append(
                and_(*(c == v for (c, _), v in zip(self._order[:i], values, strict=False)), beyond)
            )
        return or_(*alternatives)


class _Precompiled:
    """A SELECT compiled once per dialect and run on the driver's connection.

    The repository's point read is the hottest statement of the mesh; this skips
    what SQLAlchemy does per execution beyond the driver call (cache key,
    execution context, result object), about 30 µs a read. The statement is still
    SQLAlchemy Core, compiled by the dialect; result values get the same type
    processing SQLAlchemy applies on SQLite (JSON text, datetime text), while on
    PostgreSQL psycopg already returns each column type the stores use (text,
    integers, float8, boolean, timestamptz, json) as its Python type.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self._sql: dict[str, tuple[str, list[str] | None, list[Any]]] = {}
        for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", psycopg_dialect())):
            compiled = statement.compile(dialect=dialect)
            positions = list(compiled.positiontup) if compiled.positiontup is not None else None
            processors = []
            if name == "sqlite":
                processors = [
                    c.type.dialect_impl(dialect).result_processor(dialect, None)
                    for c in statement.selected_columns
                ]
            self._sql[name] = (str(compiled), positions, processors)

    def first(self, tx: Tx, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Returns the first row for ``params`` (by bind parameter name), or None."""
        sql, positions, processors = self._sql[tx.dialect]
        cursor = tx.link.send(sql, [params[p] for p in positions] if positions is not None else params)
        row = cursor.fetchone()
        if row is None or not processors:
            return row  # type: ignore[no-any-return]
        return tuple(
            value if process is None else process(value)
            for process, value in zip(processors, row, strict=True)
        )


def _column_value(column: Column[Any], value: Any) -> Any:
    """A page token's JSON value as the column's Python type; forged or foreign values are refused."""
    kind = column.type
    try:
        if isinstance(kind, DateTime) and isinstance(value, str):
            return dt.datetime.fromisoformat(value)
        if isinstance(kind, Integer) and isinstance(value, int) and not isinstance(value, bool):
            if -(2**63) <= value < 2**63:
                return value
        elif isinstance(kind, String) and isinstance(value, str):
            return value
    except ValueError:
        pass
    raise invalid("page_token", "is not a page token of this list")
