"""Runs a service's Alembic lineage (``migrations/<service>/``) to head.

Usage::

    python -m services.kit.migrate upgrade <service>
    python -m services.kit.migrate revision <service> -m "message"   # autogenerate

The service's ``migrations/<service>/env.py`` calls :func:`run_env`, so every
lineage configures Alembic the same way. Migrations run with the admin URL
(``migration_database_url``, else ``database_url``); the services connect as
:data:`~services.kit.db.APP_ROLE`.

Row-level security: a revision that creates a tenant-owned table (one with a
``tenant_id`` column) calls :func:`enable_tenant_isolation` with its name, the one
place a new table is listed; ``tests/service/test_isolation.py`` fails for a
tenant-owned table without the policy.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, text

from services.kit.config import MeshSettings
from services.kit.db import APP_ROLE, connect_args, database_url, schema_name

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(service: str) -> Config:
    """Alembic config for ``migrations/<service>``."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations" / service))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(ROOT / "migrations" / service / "versions"))
    return config


def upgrade(settings: MeshSettings, service: str, revision: str = "head") -> None:
    """Creates the service's schema (PostgreSQL) and migrates it to ``revision``, as the admin URL."""
    url = database_url(settings, service, admin=True)
    if url.get_backend_name() == "postgresql":
        admin = create_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema_name(settings, service)}"'))
        admin.dispose()
    engine = create_engine(url, connect_args=connect_args(settings, service))
    try:
        with engine.begin() as connection:
            config = alembic_config(service)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def run_env(target_metadata: MetaData) -> None:
    """Body of every lineage's ``env.py``: migrate on the connection it was given."""
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


# Rows are visible and writable only for the tenant of the transaction (app.tenant_id, set by
# services.kit.db.bind_tenant), or for every tenant in the few system transactions that set
# app.all_tenants. current_setting(..., true) is NULL when unset, and NULL matches nothing.
TENANT_PREDICATE = (
    "tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.all_tenants', true) = 'on'"
)


def _postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _schema() -> str:
    """The quoted schema being migrated (the first of the connection's ``search_path``)."""
    bind = op.get_bind()
    schema = bind.execute(text("SELECT current_schema()")).scalar_one()
    return str(bind.dialect.identifier_preparer.quote(schema))


def grant_app_role() -> None:
    """Creates :data:`~services.kit.db.APP_ROLE` if missing and grants it this schema's data.

    The role can log in and do nothing else (NOSUPERUSER NOBYPASSRLS NOCREATEROLE
    NOCREATEDB), so row-level security applies to it (PostgreSQL docs, "Row Security
    Policies"). Roles are cluster-wide and shared by every service, so an existing
    role is kept as it is. It gets USAGE on the schema and SELECT, INSERT, UPDATE,
    DELETE on its tables (and its sequences), now and, through ALTER DEFAULT
    PRIVILEGES, on tables later migrations create. A no-op on SQLite.
    """
    if not _postgresql():
        return
    schema = _schema()
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by another service's migration
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {APP_ROLE}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {APP_ROLE}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}"
        f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}")


def revoke_app_role() -> None:
    """Undoes :func:`grant_app_role` for this schema; the shared role itself stays."""
    if not _postgresql():
        return
    schema = _schema()
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE USAGE, SELECT ON SEQUENCES FROM {APP_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema}"
        f" REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}"
    )
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {APP_ROLE}")


def enable_tenant_isolation(tables: Iterable[str]) -> None:
    """Turns on row-level security with the ``tenant_isolation`` policy on tenant-owned tables.

    ``ENABLE`` makes the policy apply; ``FORCE`` makes it apply to the table's owner too
    (PostgreSQL docs, "ALTER TABLE"). The policy is for all commands: ``USING`` filters the
    rows a query sees, updates or deletes, ``WITH CHECK`` rejects inserted or updated rows
    of another tenant (PostgreSQL docs, "CREATE POLICY", "Row Security Policies").
    Superusers and roles with BYPASSRLS are never subject to it. A no-op on SQLite.

    Args:
        tables: Names of tables that have a ``tenant_id`` column.
    """
    if not _postgresql():
        return
    for table in tables:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table}"
            f" USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
        )


def disable_tenant_isolation(tables: Iterable[str]) -> None:
    """Undoes :func:`enable_tenant_isolation`: drops the policy and turns row-level security off."""
    if not _postgresql():
        return
    for table in tables:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def main() -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["upgrade", "revision"])
    parser.add_argument("service")
    parser.add_argument("-m", "--message", default="change")
    args = parser.parse_args()
    settings = MeshSettings()
    if args.action == "upgrade":
        upgrade(settings, args.service)
        return
    url = database_url(settings, args.service, admin=True)
    engine = create_engine(url, connect_args=connect_args(settings, args.service))
    with engine.begin() as connection:
        config = alembic_config(args.service)
        config.attributes["connection"] = connection
        command.revision(config, message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
