"""Database engines and transactions, SQLite by default, PostgreSQL by URL.

Each service owns its data: a SQLite file ``<state_dir>/<service>.db``, or on
PostgreSQL its own schema (``search_path`` set per connection), so services
never read each other's tables.

On PostgreSQL, row-level security backs up the stores' ``tenant_id`` filters:
every tenant-owned table has the policy ``tenant_isolation`` (migration 0002 of
each lineage), and :meth:`Database.transaction` sets ``app.tenant_id`` at the
start of every transaction. Two roles are involved:

- migrations run as the admin (schema owner) URL, ``migration_database_url``
  or else ``database_url``;
- services connect as :data:`APP_ROLE`, a role without ``BYPASSRLS`` (superusers
  and ``BYPASSRLS`` roles skip every policy, PostgreSQL docs, "Row Security
  Policies"). When ``migration_database_url`` is set, ``database_url`` is that
  role's URL as given; when only ``database_url`` is set (local use, tests), it is
  the admin URL and the services' URL is derived from it with the user replaced
  by :data:`APP_ROLE` and no password (see :func:`app_url`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from services.kit.auth import current_principal
from services.kit.config import MeshSettings
from services.kit.errors import PermissionDenied

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


def new_metadata() -> MetaData:
    """A ``MetaData`` with the project's naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def schema_name(settings: MeshSettings, service: str) -> str:
    """The PostgreSQL schema of ``service``: ``<schema_prefix><service>``."""
    return f"{settings.schema_prefix}{service}"


def app_url(settings: MeshSettings) -> str | None:
    """The URL services connect with, or None for SQLite.

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


def database_url(settings: MeshSettings, service: str, *, sync: bool = False, admin: bool = False) -> URL:
    """The SQLAlchemy URL of ``service``'s database.

    Args:
        settings: ``database_url`` and ``migration_database_url`` (PostgreSQL) or
            ``state_dir`` (SQLite file).
        service: The service whose database it is.
        sync: Return a URL with a synchronous driver (for Alembic).
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
    driver = "sqlite" if sync else "sqlite+aiosqlite"
    return URL.create(driver, database=str(settings.state_dir / f"{service}.db"))


def connect_args(settings: MeshSettings, service: str) -> dict[str, object]:
    """Driver arguments: the service's schema as ``search_path`` on PostgreSQL."""
    if database_url(settings, service).get_backend_name() == "postgresql":
        return {"options": f"-csearch_path={schema_name(settings, service)}"}
    return {}


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(settings: MeshSettings, service: str, *, admin: bool = False) -> AsyncEngine:
    """The async engine of ``service`` (``postgresql+psycopg`` or ``sqlite+aiosqlite``).

    Args:
        settings: Where the database is.
        service: The service whose database it is.
        admin: Connect with the admin URL (tests inspecting stored rows), not as
            :data:`APP_ROLE`.
    """
    url = database_url(settings, service, admin=admin)
    engine = create_async_engine(url, connect_args=connect_args(settings, service), pool_pre_ping=True)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


async def insert_unique(session: AsyncSession, row: DeclarativeBase) -> bool:
    """Inserts ``row`` in a savepoint; False when a unique key is taken.

    The enclosing transaction goes on either way, so a create can report
    ALREADY_EXISTS without losing anything else it wrote.
    """
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


async def bind_tenant(session: AsyncSession, tenant: str | None, *, all_tenants: bool = False) -> None:
    """Scopes the rest of the session's transaction to ``tenant`` (PostgreSQL; a no-op on SQLite).

    Sets ``app.tenant_id`` and ``app.all_tenants`` with ``set_config(..., true)``, the
    function form of ``SET LOCAL``: the values end with the transaction, so a pooled
    connection never carries them into the next one (PostgreSQL docs, "System
    Administration Functions", ``set_config``). The ``tenant_isolation`` policies read
    them (PostgreSQL docs, "CREATE POLICY").

    Args:
        session: A session inside a transaction.
        tenant: The tenant whose rows are visible and writable; None means none are.
        all_tenants: Make every tenant's rows visible and writable (system work only).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(
        text("SELECT set_config('app.tenant_id', :tenant, true), set_config('app.all_tenants', :all, true)"),
        {"tenant": tenant or "", "all": "on" if all_tenants else "off"},
    )


Row = TypeVar("Row", bound=DeclarativeBase)
Item = TypeVar("Item")


async def write_per_tenant(
    session: AsyncSession,
    items: Sequence[Item],
    tenant_of: Callable[[Item], str],
    write: Callable[[list[Item]], Awaitable[int]],
) -> int:
    """Writes a batch that spans tenants inside one transaction, all or nothing.

    Each tenant's part is written while the transaction acts for that tenant, so
    row-level security checks every row against its own tenant (an internal
    caller, scoped to none, could not write them otherwise).

    Returns:
        The sum of what ``write`` returned for each part.
    """
    parts: dict[str, list[Item]] = {}
    for item in items:
        parts.setdefault(tenant_of(item), []).append(item)
    total = 0
    for tenant, part in parts.items():
        await bind_tenant(session, tenant)
        total += await write(part)
    return total


async def insert_idempotent(
    session: AsyncSession, row: Row, earlier: Callable[[], Awaitable[Row | None]]
) -> Row | None:
    """Inserts ``row`` unless a request with the same idempotency key made one first.

    Safe under concurrency: the unique ``(tenant, ..., request_id)`` key decides, so two
    racing retries yield one row and both callers get it (AIP-155).

    Args:
        session: A session inside a transaction.
        row: The new row; its ``request_id`` may be None.
        earlier: Finds the row made by an earlier request with ``row``'s request ID
            (None when there is no request ID or no such row).

    Returns:
        ``row`` when inserted; the earlier request's row when the idempotency key
        conflicted; None when another unique key conflicted (the ID is taken).
    """
    if await insert_unique(session, row):
        return row
    return await earlier()


class Database:
    """Sessions of one service's database; every unit of work is one transaction.

    Args:
        engine: The service's engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(
        self, *, tenant: str | None = None, all_tenants: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on exit, rolled back on any error.

        On PostgreSQL the transaction starts with :func:`bind_tenant`, so row-level
        security shows and accepts only the rows of the caller's tenant
        (``current_principal().tenant``), whatever the queries say.

        Args:
            tenant: The tenant to act for when the caller is scoped to none: internal
                RPCs that name the tenant in the request, background work for one tenant.
            all_tenants: See every tenant's rows. Only for the few system reads that
                must span tenants (resuming runs at start-up, finding an API key by ID
                before its tenant is known).

        Raises:
            PermissionDenied: ``tenant`` is not the tenant the caller is scoped to.
        """
        bound = current_principal().tenant
        if tenant is not None and bound is not None and tenant != bound:
            raise PermissionDenied(
                "TENANT_MISMATCH",
                f"the caller may not access resources of tenant {tenant!r}",
                metadata={"tenant": tenant},
            )
        async with self._sessions() as session, session.begin():
            await bind_tenant(session, tenant or bound, all_tenants=all_tenants)
            yield session

    async def close(self) -> None:
        """Disposes of the connection pool."""
        await self.engine.dispose()
