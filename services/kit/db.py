"""Database engines and transactions: SQLite by default, PostgreSQL by URL.

Each service owns its data: a SQLite file ``<state_dir>/<service>.db``, or on
PostgreSQL its own schema (``search_path`` set per connection), so services
never read each other's tables.

**A transaction is a function.** A unit of work is a plain function of a
:class:`Tx` (SQLAlchemy Core statements, no ``await`` inside), and
:meth:`Database.read` / :meth:`Database.write` run the whole function, from
``BEGIN`` to ``COMMIT``, where it costs least: in one call to a worker thread
(writes; everything on PostgreSQL, so the event loop never waits on the network
or a lock), or, for SQLite reads, in the event loop's thread. A transaction
never spans a peer call. Measured on one core (a point SELECT in a
transaction): ``sqlite+aiosqlite``, which hops to its thread for every statement
and cursor call, 364 µs; one hop per transaction 118 µs; in the loop thread 60
µs (:class:`Database` says when that is safe).

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
took two (psycopg docs, "Multiple statements in the same query"). ``BEGIN``
and ``COMMIT`` go straight to the driver. Each thread keeps its connection, so
none is pinged (a round trip per transaction): a connection found dead at
``BEGIN`` is discarded and the transaction starts again on a fresh one, once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from opentelemetry import trace
from psycopg import sql as psycopg_sql
from sqlalchemy import MetaData, event
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.engine import create_engine as sa_create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable

from services.kit.calls import CURRENT_RPC
from services.kit.config import MeshSettings
from services.kit.tracing import recording, tracing_enabled

# The login role services connect as on PostgreSQL: NOSUPERUSER NOBYPASSRLS, so the
# tenant_isolation policies apply to it. Created and granted by each lineage's 0002 migration.
_tracer = trace.get_tracer("orchestrall.db")

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
POSTGRES_WORKERS = 4

# Driver-level statements (psycopg placeholders) binding the tenant: for the rest of a
# transaction (SET LOCAL), or for the connection's session (reads, see Tx.begin).
_BIND_LOCAL = "SELECT set_config('app.tenant_id', %s, true), set_config('app.all_tenants', %s, true)"
_BIND_SESSION = "SELECT set_config('app.tenant_id', %s, false), set_config('app.all_tenants', %s, false)"
_TENANT_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"


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
            pool_size=SQLITE_WORKERS + 1,  # and the event loop's own, for reads
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


class Link:
    """One thread's connection to the database, kept for the thread's life.

    Attributes:
        connection: The SQLAlchemy connection.
        raw: The driver's connection under it (``sqlite3`` or ``psycopg``), in autocommit mode.
        cursor: A driver cursor reused for the statements the kit sends itself.
        session_scope: On PostgreSQL, the ``(tenant, all_tenants)`` the connection's
            session settings hold (reads bind at session level, see :meth:`Tx.begin`);
            None when unknown.
        statements: Statements sent on this connection so far, by the RPC whose unit of
            work sent them (:data:`CURRENT_RPC`; empty for background work). A batch
            counts once.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.raw = _driver(connection)
        self.cursor = self.raw.cursor()
        self.session_scope: tuple[str, bool] | None = None
        self.statements: collections.Counter[str] = collections.Counter()
        connection.info["link"] = self
        event.listen(connection, "before_cursor_execute", _count_statement)

    def send(self, sql: str, params: Any = None) -> Any:
        """Runs a driver-level statement on the reused cursor; returns the cursor."""
        self.statements[CURRENT_RPC.get()] += 1
        if params is None:
            self.cursor.execute(sql)
        else:
            self.cursor.execute(sql, params)
        return self.cursor


def _count_statement(connection: Connection, *_args: object) -> None:
    connection.info["link"].statements[CURRENT_RPC.get()] += 1


class Tx:
    """One unit of work: the connection, and the tenant it acts for.

    Store functions take a ``Tx`` first and run Core statements through
    :meth:`execute`. The tenant a unit of work is bound to is the one its queries
    filter by (:attr:`tenant_id`) and, on PostgreSQL, the one row-level security
    admits, so the two can never disagree.

    Attributes:
        link: The thread's connection.
        connection: The SQLAlchemy connection.
        dialect: ``sqlite`` or ``postgresql``.
        changed: Whether a statement of this unit of work changed a row (audited
            calls record an event only then).
        in_transaction: Whether :meth:`begin` opened a transaction (writes), which
            must be committed or rolled back.
    """

    def __init__(self, link: Link, dialect: str) -> None:
        self.link = link
        self.connection = link.connection
        self.dialect = dialect
        self.changed = False
        self.in_transaction = False
        self._tenant: str | None = None

    @property
    def tenant_id(self) -> str:
        """Returns the tenant this unit of work acts for.

        Raises:
            RuntimeError: The unit of work is bound to no tenant (system work); a
                tenant-scoped query there is a bug.
        """
        if self._tenant is None:
            raise RuntimeError("a tenant-scoped query in a transaction bound to no tenant")
        return self._tenant

    @property
    def bound_tenant(self) -> str | None:
        """Returns the tenant the unit of work is bound to now, or None."""
        return self._tenant

    def begin(self, tenant: str | None, *, all_tenants: bool, write: bool) -> None:
        """Starts the unit of work, bound to ``tenant`` (see :meth:`bind`), in at most one round trip.

        * Writes open a transaction: on SQLite ``BEGIN IMMEDIATE``; on PostgreSQL
          ``BEGIN`` and ``set_config(..., true)`` (``SET LOCAL``) as one simple-protocol
          query (the tenant goes in as a quoted literal, since that protocol takes no
          parameters).
        * Reads open none: each statement commits on its own and sees what was
          committed when it started, as every statement of a PostgreSQL READ COMMITTED
          transaction would (PostgreSQL docs, "Transaction Isolation"); ``BEGIN`` and
          ``COMMIT`` would add two statements (two round trips on PostgreSQL) and no
          guarantee the stores rely on. On PostgreSQL the tenant is bound with
          session-level ``set_config(..., false)``, and only when the connection last
          served another scope: the connection is this thread's alone, and the kit binds
          it before every read it runs, so a statement never runs under another unit of
          work's tenant.

        Args:
            tenant: The tenant the unit of work acts for, or None.
            all_tenants: Make every tenant's rows visible and writable (system work only).
            write: The unit of work writes (a transaction; on SQLite the write lock now).
        """
        self._tenant = tenant
        if not write:
            if self.dialect == "postgresql":
                self._bind_session(tenant, all_tenants)
            return
        if self.dialect == "sqlite":
            self.link.send("BEGIN IMMEDIATE")
            self.in_transaction = True
        else:
            literal = psycopg_sql.Literal(tenant or "").as_string(self.link.raw)
            scope = "on" if all_tenants else "off"
            self.link.send(
                f"BEGIN; SELECT set_config('app.tenant_id', {literal}, true),"
                f" set_config('app.all_tenants', '{scope}', true)"
            )
            self.in_transaction = True

    def _bind_session(self, tenant: str | None, all_tenants: bool) -> None:
        scope = (tenant or "", all_tenants)
        if self.link.session_scope == scope:
            return
        self.link.session_scope = None  # unknown until the statement has run
        self.link.send(_BIND_SESSION, (scope[0], "on" if all_tenants else "off"))
        self.link.session_scope = scope

    def bind(self, tenant: str | None, *, all_tenants: bool = False) -> None:
        """Scopes the rest of the unit of work to ``tenant``.

        On PostgreSQL this sets ``app.tenant_id`` and ``app.all_tenants``, which the
        ``tenant_isolation`` policies read (PostgreSQL docs, "CREATE POLICY"): in a
        transaction with ``set_config(..., true)``, the function form of ``SET
        LOCAL``, whose values end with the transaction (PostgreSQL docs, "System
        Administration Functions"); for a read, at session level (see :meth:`begin`).

        Args:
            tenant: The tenant whose rows are visible and writable; None means none are.
            all_tenants: Make every tenant's rows visible and writable (system work only).
        """
        self._tenant = tenant
        if self.dialect != "postgresql":
            return
        if not self.in_transaction:
            self._bind_session(tenant, all_tenants)
            return
        self.link.send(_BIND_LOCAL, (tenant or "", "on" if all_tenants else "off"))

    def lock_tenant(self, scope: str) -> None:
        """Serializes, until the transaction ends, every unit of work that locks ``scope`` for this tenant.

        For a read-check-write that must hold across replicas, such as counting what a
        tenant has in progress before admitting one more: a row lock cannot guard rows
        that do not exist yet. On PostgreSQL a transaction-scoped advisory lock on
        ``hashtext('<scope>:<tenant>')`` (PostgreSQL docs, "Advisory Locks"; two keys
        may share a hash, which only serializes them needlessly); on SQLite nothing,
        since its write transactions hold the database's write lock from ``BEGIN
        IMMEDIATE`` on.

        Args:
            scope: What is guarded, e.g. ``agent.runs``; one name per invariant.

        Raises:
            RuntimeError: Not in a write transaction (a read's lock would end at once),
                or bound to no tenant.
        """
        if not self.in_transaction:
            raise RuntimeError("a tenant lock outside a write transaction")
        key = f"{scope}:{self.tenant_id}"
        if self.dialect == "postgresql":
            self.link.send(_TENANT_LOCK, (key,))

    def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        """Runs a statement (a list of parameter dicts runs it as a batch).

        Returns:
            The cursor result. A data-changing statement that reports rows (or an
            unknown count) marks the unit of work :attr:`changed`.
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


class Workers:
    """Threads that run units of work for one event loop, and hand results back in batches.

    ``run_in_executor`` wakes the event loop once per finished call; under load
    several units of work finish between two turns of the loop, and here they are
    handed back together, with one wake-up (``call_soon_threadsafe``) for as many
    results as are ready. Each thread keeps its own database connection
    (:class:`Database`).

    Args:
        size: How many threads.
        name: Their name prefix.
    """

    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        # Finished work not yet handed back, per event loop of the awaiting tasks.
        self._done: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ]
        self._done = {}
        self._lock = threading.Lock()
        self._busy = 0
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, call: Callable[[], T]) -> T:
        """Runs ``call`` in one of the threads and returns what it returned (or raises what it raised)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, call))
        return await future

    def counts(self) -> tuple[int, int, int]:
        """Returns the threads at work, the idle ones, and the calls waiting for one."""
        busy = self._busy
        return busy, len(self._threads) - busy, self._jobs.qsize()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            with self._lock:
                self._busy += 1
            try:
                outcome: tuple[Any, BaseException | None] = (call(), None)
            except BaseException as error:  # handed to the awaiting task, raised there
                outcome = (None, error)
            loop = future.get_loop()
            with self._lock:
                self._busy -= 1
                pending = self._done.setdefault(loop, [])
                first = not pending
                pending.append((future, *outcome))
            if first:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody awaits
                    loop.call_soon_threadsafe(self._hand_back, loop)

    def _hand_back(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            done = self._done.pop(loop, [])
        for future, value, error in done:
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def shutdown(self) -> None:
        """Lets queued work finish, then stops the threads (blocking)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()


class Database:
    """One service's database; every unit of work is one transaction, run where it costs least.

    * On PostgreSQL every transaction runs in a worker thread, one hop from the
      event loop: the loop never waits on the network.
    * On SQLite a write runs in a worker thread too: ``BEGIN IMMEDIATE`` may wait
      for another writer's lock. A read runs in the event loop's own thread, on a
      connection of its own that never waits for a lock (``busy_timeout`` 0): in
      WAL mode a reader does not wait for writers (SQLite docs, "Write-Ahead
      Logging"), and every read the stores make is bounded (a row by key, a page,
      a few totals), so it costs tens of microseconds, less than the hop itself.
      The rare read that meets a lock all the same is run again in a worker thread.

    Each worker thread (and the loop, for SQLite reads) keeps one connection for
    its life instead of taking one from the pool per transaction.

    Args:
        engine: The service's engine (:func:`create_engine`).
        workers: Worker threads; each holds one pooled connection.
    """

    def __init__(self, engine: Engine, *, workers: int | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        size = workers or (SQLITE_WORKERS if self.dialect == "sqlite" else POSTGRES_WORKERS)
        self._workers = Workers(size, "db")
        self._before_commit: list[BeforeCommit] = []
        self._local = threading.local()
        self._links: list[Link] = []
        self._session_setup: list[str] = []
        self._connections_lock = threading.Lock()
        # Decided once: with tracing off a transaction pays nothing for it.
        self._traced = tracing_enabled()

    def connection_counts(self) -> tuple[int, int, int]:
        """Returns the worker connections in use, the idle ones, and the units of work waiting for one.

        Each worker thread holds one connection (SQLite reads on the event loop's own
        connection are not counted).
        """
        return self._workers.counts()

    def statements(self) -> collections.Counter[str]:
        """Returns how many statements this database's connections have sent, by RPC (see :class:`Link`).

        Each connection's counts are its thread's alone; a benchmark reads their sum.
        """
        total: collections.Counter[str] = collections.Counter()
        with self._connections_lock:
            for link in self._links:
                total.update(link.statements)
        return total

    def session_setup(self, dialect: str, statement: str) -> None:
        """Registers a statement each new connection of ``dialect`` runs first, outside any transaction.

        For session state a store relies on, such as a temporary staging table.
        """
        if dialect == self.dialect:
            self._session_setup.append(statement)

    def before_commit(self, hook: BeforeCommit) -> None:
        """Registers ``hook`` to run inside every write transaction that changed rows, before it commits."""
        self._before_commit.append(hook)

    async def read(self, tenant: str | None, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs ``work(tx, *args, **kwargs)`` in a transaction acting for ``tenant``.

        Args:
            tenant: The tenant the transaction acts for: its rows only are visible on
                PostgreSQL, and :attr:`Tx.tenant_id` returns it. None for system work
                (then nothing tenant-owned is visible unless ``work`` binds one).
            work: The unit of work. It must only read, do bounded work (on SQLite it
                runs in the event loop's thread) and not block on anything but the
                database.
            *args: Passed to ``work`` after the transaction.
            **kwargs: Passed to ``work``.

        Returns:
            What ``work`` returned, after the transaction committed.

        Raises:
            Exception: Whatever ``work`` raised; the transaction is rolled back.
        """
        if self.dialect == "sqlite":
            try:
                return self._transaction(False, tenant, False, work, args, kwargs, inline=True)
            except OperationalError as error:
                if "locked" not in str(error.orig):
                    raise
        return await self._submit(False, tenant, False, work, args, kwargs)

    async def write(self, tenant: str | None, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Like :meth:`read`, in a worker thread, for work that writes.

        It takes SQLite's write lock first and runs the commit hooks.

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
        return await self._workers.run(
            functools.partial(context.run, self._transaction, write, tenant, all_tenants, work, args, kwargs)
        )

    def _link(self, inline: bool) -> Link:
        """This thread's connection, made on first use."""
        link: Link | None = getattr(self._local, "link", None)
        if link is None or link.connection.invalidated or link.connection.closed:
            link = Link(self.engine.connect())
            if inline:  # the loop's reads must never wait
                link.send("PRAGMA busy_timeout=0")
            for statement in self._session_setup:
                link.send(statement)
            self._local.link = link
            with self._connections_lock:
                self._links.append(link)
        return link

    def _discard(self) -> None:
        link: Link | None = getattr(self._local, "link", None)
        self._local.link = None
        if link is not None:
            with contextlib.suppress(Exception):
                link.connection.invalidate()
                link.connection.close()

    def _transaction(
        self,
        write: bool,
        tenant: str | None,
        all_tenants: bool,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        inline: bool = False,
    ) -> T:
        if not self._traced or not recording():  # no span under a trace that is not recorded
            return self._attempts(write, tenant, all_tenants, work, args, kwargs, inline)
        name = getattr(work, "__name__", "work")
        attributes = {"db.system.name": self.dialect, "db.operation.name": "transaction"}
        with _tracer.start_as_current_span(f"{'write' if write else 'read'} {name}", attributes=attributes):
            return self._attempts(write, tenant, all_tenants, work, args, kwargs, inline)

    def _attempts(
        self,
        write: bool,
        tenant: str | None,
        all_tenants: bool,
        work: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        inline: bool,
    ) -> T:
        for attempt in (1, 2):
            link = self._link(inline)
            tx = Tx(link, self.dialect)
            try:
                tx.begin(tenant, all_tenants=all_tenants, write=write)
            except Exception:
                if attempt == 1 and _broken(link.raw):
                    self._discard()  # a connection the server dropped: once more, on a new one
                    continue
                raise
            try:
                result = work(tx, *args, **kwargs)
                if write and tx.changed:
                    for hook in self._before_commit:
                        hook(tx)
                if tx.in_transaction:
                    link.send("COMMIT")
            except BaseException:
                try:
                    if tx.in_transaction:
                        link.send("ROLLBACK")
                except Exception:  # a broken connection: never reused
                    self._discard()
                raise
            finally:
                try:
                    link.connection.commit()  # SQLAlchemy's own bookkeeping; the driver autocommits
                except Exception:
                    self._discard()
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def close(self) -> None:
        """Waits for running transactions, then closes the connections and the pool."""
        await asyncio.to_thread(self._workers.shutdown)
        with self._connections_lock:
            links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(Exception):
                link.connection.close()
        self.engine.dispose()


def _driver(connection: Connection) -> Any:
    """The driver's own connection under a SQLAlchemy connection (``sqlite3`` or ``psycopg``)."""
    raw = connection.connection.driver_connection
    if raw is None:
        raise RuntimeError("the connection has no driver connection")
    return raw


def _broken(raw: Any) -> bool:
    """Whether a driver connection is unusable: psycopg marks one the server dropped ``broken``."""
    return bool(getattr(raw, "broken", False) or getattr(raw, "closed", False))


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
