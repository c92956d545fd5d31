"""Database engines and transactions: SQLite by default, PostgreSQL by URL.

Each service owns its data: a SQLite file ``<state_dir>/<service>.db``, or on
PostgreSQL its own schema (``search_path`` set per connection), so services
never read each other's tables.

**One hop per transaction.** A unit of work is a plain function of a :class:`Tx`
(SQLAlchemy Core statements, no ``await`` inside), and :meth:`Database.read` /
:meth:`Database.write` run the whole function, from ``BEGIN`` to ``COMMIT``, in
one call to a worker thread. The event loop never waits on a statement, and a
transaction never spans a peer call. Measured on one core against
``sqlite+aiosqlite`` (a point SELECT in a transaction): aiosqlite 364 µs, which
hops to its thread for every statement and cursor call; one hop per
transaction 118 µs; the same transaction in the loop thread 60 µs, but that
blocks every other RPC while SQLite waits for a lock or scans a large table.

**Row-level security.** On PostgreSQL every tenant-owned table has the policy
``tenant_isolation`` (migration 0002 of each lineage), and each transaction
starts by binding the tenant it acts for (:meth:`Tx.bind`). Two roles are
involved:

- migrations run as the admin (schema owner) URL, ``migration_database_url``
  or else ``database_url``;
- services connect as :data:`APP_ROLE`, a role without ``BYPASSRLS`` (superusers
  and ``BYPASSRLS`` roles skip every policy, PostgreSQL docs, "Row Security
  Policies"). When ``migration_database_url`` is set, ``database_url`` is that
  role's URL as given; when only ``database_url`` is set (local use, tests), it is
  the admin URL and the services' URL is derived from it with the user replaced
  by :data:`APP_ROLE` and no password (see :func:`app_url`).

**Transactions are explicit.** Both drivers run in autocommit mode and every
transaction sends its own ``BEGIN`` and ``COMMIT``. On SQLite, Python's
``sqlite3`` module would otherwise open transactions only before data-changing
statements, so a read-modify-write would not be atomic; reads send ``BEGIN``,
writes ``BEGIN IMMEDIATE`` (the write lock is taken first, so two writers never
both read and then collide on the upgrade; SQLite docs, "BEGIN TRANSACTION").
On PostgreSQL, ``BEGIN`` and the tenant binding go as one simple-protocol query,
one round trip where psycopg's implicit ``BEGIN`` plus a ``set_config`` call
took two (psycopg docs, "Multiple statements in the same query"). Connections
are not pinged when taken from the pool (a round trip per transaction): a
connection found dead at ``BEGIN`` is discarded and the transaction starts
again on a fresh one, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from psycopg import sql as psycopg_sql
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.engine import create_engine as sa_create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from services.kit.config import MeshSettings

# The login role services connect as on PostgreSQL: NOSUPERUSER NOBYPASSRLS, so the
# tenant_isolation policies apply to it. Created and granted by each lineage's 0002 migration.
APP_ROLE = "orchestrall_app"

# Stable constraint names, so Alembic migrations are reproducible.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Worker threads (and pooled connections) per service database. SQLite serializes writers
# anyway; on PostgreSQL this bounds the transactions one replica has open at once.
SQLITE_WORKERS = 4
POSTGRES_WORKERS = 8

_BIND_TENANT = text(
    "SELECT set_config('app.tenant_id', :tenant, true), set_config('app.all_tenants', :all, true)"
)


def new_metadata() -> MetaData:
    """Returns a ``MetaData`` with the project's naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def schema_name(settings: MeshSettings, service: str) -> str:
    """Returns the PostgreSQL schema of ``service``: ``<schema_prefix><service>``."""
    return f"{settings.schema_prefix}{service}"


def app_url(settings: MeshSettings) -> str | None:
    """Returns the URL services connect with, or None for SQLite.

    ``database_url`` as given when ``migration_database_url`` is set too, or when it
    is not PostgreSQL. A PostgreSQL ``database_url`` on its own is the admin URL:
    the services then connect to the same server and database as :data:`APP_ROLE`,
    without a password (trust or peer authentication, as in local use and tests).
    With password authentication, set both URLs.
    """
    if not settings.database_url or settings.migration_database_url:
        return settings.database_url
    url = make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        return settings.database_url
    # URL.set() keeps the password when given None, so build the URL afresh without one.
    app = URL.create(url.drivername, APP_ROLE, None, url.host, url.port, url.database, query=url.query)
    return app.render_as_string(hide_password=False)


def database_url(settings: MeshSettings, service: str, *, admin: bool = False) -> URL:
    """Returns the SQLAlchemy URL of ``service``'s database (``postgresql+psycopg`` or ``sqlite``).

    Args:
        settings: ``database_url`` and ``migration_database_url`` (PostgreSQL) or
            ``state_dir`` (SQLite file).
        service: The service whose database it is.
        admin: The admin (schema owner) URL migrations use, instead of the
            services' :func:`app_url`. Both are the same file on SQLite.
    """
    given = (settings.migration_database_url or settings.database_url) if admin else app_url(settings)
    if given:
        url = make_url(given)
        if url.get_backend_name() == "postgresql":
            return url.set(drivername="postgresql+psycopg")
        return url
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return URL.create("sqlite", database=str(settings.state_dir / f"{service}.db"))


def connect_args(settings: MeshSettings, service: str) -> dict[str, object]:
    """Returns the driver arguments: the service's schema as ``search_path`` on PostgreSQL."""
    if database_url(settings, service).get_backend_name() == "postgresql":
        return {"options": f"-csearch_path={schema_name(settings, service)}"}
    return {}


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(settings: MeshSettings, service: str, *, admin: bool = False) -> Engine:
    """Returns the engine of ``service``, pooled for :class:`Database`'s worker threads.

    Both drivers run in autocommit mode: :class:`Database` sends ``BEGIN`` and
    ``COMMIT`` itself (see the module docs).

    Args:
        settings: Where the database is.
        service: The service whose database it is.
        admin: Connect with the admin URL (migrations, tests inspecting stored
            rows), not as :data:`APP_ROLE`.
    """
    url = database_url(settings, service, admin=admin)
    if url.get_backend_name() == "sqlite":
        engine = sa_create_engine(
            url,
            connect_args={"isolation_level": None, "check_same_thread": False},
            pool_size=SQLITE_WORKERS,
            max_overflow=0,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa_create_engine(
        url,
        connect_args=connect_args(settings, service),
        isolation_level="AUTOCOMMIT",
        pool_size=POSTGRES_WORKERS,
        max_overflow=0,
    )


class Tx:
    """One transaction: the connection, and the tenant it acts for.

    Store functions take a ``Tx`` first and run Core statements through
    :meth:`execute`. The tenant a transaction is bound to is the one its queries
    filter by (:attr:`tenant_id`) and, on PostgreSQL, the one row-level security
    admits, so the two can never disagree.

    Attributes:
        connection: The SQLAlchemy connection, inside the transaction.
        dialect: ``sqlite`` or ``postgresql``.
        changed: Whether a statement of this transaction changed a row (audited
            calls record an event only then).
    """

    def __init__(self, connection: Connection, dialect: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self.changed = False
        self._tenant: str | None = None

    @property
    def tenant_id(self) -> str:
        """Returns the tenant this transaction acts for.

        Raises:
            RuntimeError: The transaction is bound to no tenant (a system transaction);
                a tenant-scoped query there is a bug.
        """
        if self._tenant is None:
            raise RuntimeError("a tenant-scoped query in a transaction bound to no tenant")
        return self._tenant

    @property
    def bound_tenant(self) -> str | None:
        """Returns the tenant the transaction is bound to now, or None."""
        return self._tenant

    def begin(self, tenant: str | None, *, all_tenants: bool, write: bool) -> None:
        """Starts the transaction, bound to ``tenant`` (see :meth:`bind`), in one round trip.

        Args:
            tenant: The tenant the transaction acts for, or None.
            all_tenants: Make every tenant's rows visible and writable (system work only).
            write: Take SQLite's write lock now.
        """
        self._tenant = tenant
        if self.dialect == "sqlite":
            self.connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
            return
        # Without parameters psycopg sends the simple query protocol, which carries several
        # statements; the tenant goes in as a quoted literal.
        raw = self.connection.connection.driver_connection
        literal = psycopg_sql.Literal(tenant or "").as_string(raw)
        scope = "on" if all_tenants else "off"
        self.connection.exec_driver_sql(
            f"BEGIN; SELECT set_config('app.tenant_id', {literal}, true),"
            f" set_config('app.all_tenants', '{scope}', true)"
        )

    def bind(self, tenant: str | None, *, all_tenants: bool = False) -> None:
        """Scopes the rest of the transaction to ``tenant``.

        On PostgreSQL this sets ``app.tenant_id`` and ``app.all_tenants`` with
        ``set_config(..., true)``, the function form of ``SET LOCAL``: the values end
        with the transaction, so a pooled connection never carries them into the next
        one (PostgreSQL docs, "System Administration Functions"). The
        ``tenant_isolation`` policies read them (PostgreSQL docs, "CREATE POLICY").

        Args:
            tenant: The tenant whose rows are visible and writable; None means none are.
            all_tenants: Make every tenant's rows visible and writable (system work only).
        """
        self._tenant = tenant
        if self.dialect == "postgresql":
            self.connection.execute(
                _BIND_TENANT, {"tenant": tenant or "", "all": "on" if all_tenants else "off"}
            )

    def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        """Runs a statement (a list of parameter dicts runs it as a batch).

        Returns:
            The cursor result. A data-changing statement that reports rows (or an
            unknown count) marks the transaction :attr:`changed`.
        """
        result = self.connection.execute(statement, parameters)
        if getattr(statement, "is_dml", False) and result.rowcount != 0:
            self.changed = True
        return result


T = TypeVar("T")
P = ParamSpec("P")
Work = Callable[Concatenate[Tx, P], T]
#: Called in a write transaction that changed rows, just before it commits (the audit outbox).
BeforeCommit = Callable[[Tx], None]


class Database:
    """One service's database; every unit of work is one transaction in one worker-thread hop.

    Args:
        engine: The service's engine (:func:`create_engine`).
        workers: Worker threads; each holds at most one pooled connection at a time.
    """

    def __init__(self, engine: Engine, *, workers: int | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        size = workers or (SQLITE_WORKERS if self.dialect == "sqlite" else POSTGRES_WORKERS)
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="db")
        self._before_commit: list[BeforeCommit] = []

    def before_commit(self, hook: BeforeCommit) -> None:
        """Registers ``hook`` to run inside every write transaction that changed rows, before it commits."""
        self._before_commit.append(hook)

    async def read(self, tenant: str | None, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs ``work(tx, *args, **kwargs)`` in a transaction acting for ``tenant``.

        Args:
            tenant: The tenant the transaction acts for: its rows only are visible on
                PostgreSQL, and :attr:`Tx.tenant_id` returns it. None for system work
                (then nothing tenant-owned is visible unless ``work`` binds one).
            work: The unit of work; it runs in a worker thread and must not block on
                anything but the database.
            *args: Passed to ``work`` after the transaction.
            **kwargs: Passed to ``work``.

        Returns:
            What ``work`` returned, after the transaction committed.

        Raises:
            Exception: Whatever ``work`` raised; the transaction is rolled back.
        """
        return await self._submit(False, tenant, False, work, args, kwargs)

    async def write(self, tenant: str | None, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Like :meth:`read`, for work that writes: takes SQLite's write lock first and runs the commit hooks.

        Returns:
            What ``work`` returned, after the transaction committed.
        """
        return await self._submit(True, tenant, False, work, args, kwargs)

    async def system(self, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs ``work`` in a write transaction that sees and may write every tenant's rows.

        Only for the few jobs that must span tenants: resuming work at start-up,
        relaying an outbox, finding a credential before its tenant is known.

        Returns:
            What ``work`` returned, after the transaction committed.
        """
        return await self._submit(True, None, True, work, args, kwargs)

    async def _submit(
        self,
        write: bool,
        tenant: str | None,
        all_tenants: bool,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        # The worker runs in a copy of the caller's context: the audit hook reads the call's
        # principal and audit record from it.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, context.run, self._transaction, write, tenant, all_tenants, work, args, kwargs
        )

    def _transaction(
        self,
        write: bool,
        tenant: str | None,
        all_tenants: bool,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        for attempt in (1, 2):
            with self.engine.connect() as connection:
                tx = Tx(connection, self.dialect)
                try:
                    tx.begin(tenant, all_tenants=all_tenants, write=write)
                except DBAPIError as error:
                    if error.connection_invalidated and attempt == 1:
                        continue  # a pooled connection the server dropped: once more, on a new one
                    raise
                try:
                    result = work(tx, *args, **kwargs)
                    if write and tx.changed:
                        for hook in self._before_commit:
                            hook(tx)
                    connection.exec_driver_sql("COMMIT")
                except BaseException:
                    with contextlib.suppress(DBAPIError):  # a broken connection is discarded anyway
                        connection.exec_driver_sql("ROLLBACK")
                    raise
                return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def close(self) -> None:
        """Waits for running transactions, then disposes of the connection pool."""
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        self.engine.dispose()


Item = TypeVar("Item")


def write_per_tenant(
    tx: Tx, items: list[Item], tenant_of: Callable[[Item], str], write: Callable[[Tx, list[Item]], int]
) -> int:
    """Writes a batch that spans tenants inside one transaction, all or nothing.

    Each tenant's part is written while the transaction is bound to that tenant, so
    row-level security checks every row against its own tenant (an internal caller,
    bound to none, could not write them otherwise).

    Returns:
        The sum of what ``write`` returned for each part.
    """
    parts: dict[str, list[Item]] = {}
    for item in items:
        parts.setdefault(tenant_of(item), []).append(item)
    total = 0
    for tenant, part in parts.items():
        tx.bind(tenant)
        total += write(tx, part)
    return total
