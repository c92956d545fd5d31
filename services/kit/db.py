"""Database engines and transactions, SQLite by default, PostgreSQL by URL.

Each service owns its data: a SQLite file ``<state_dir>/<service>.db``, or on
PostgreSQL its own schema (``search_path`` set per connection), so services
never read each other's tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from services.kit.config import MeshSettings

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


def database_url(settings: MeshSettings, service: str, *, sync: bool = False) -> URL:
    """The SQLAlchemy URL of ``service``'s database.

    Args:
        settings: ``database_url`` (PostgreSQL) or ``state_dir`` (SQLite file).
        service: The service whose database it is.
        sync: Return a URL with a synchronous driver (for Alembic).
    """
    if settings.database_url:
        url = make_url(settings.database_url)
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


def create_engine(settings: MeshSettings, service: str) -> AsyncEngine:
    """The async engine of ``service`` (``postgresql+psycopg`` or ``sqlite+aiosqlite``)."""
    url = database_url(settings, service)
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


class Database:
    """Sessions of one service's database; every unit of work is one transaction.

    Args:
        engine: The service's engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on exit, rolled back on any error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        """Disposes of the connection pool."""
        await self.engine.dispose()
