"""Runs a service's Alembic lineage (``migrations/<service>/``) to head.

Usage::

    python -m services.kit.migrate upgrade <service>
    python -m services.kit.migrate revision <service> -m "message"   # autogenerate

The service's ``migrations/<service>/env.py`` calls :func:`run_env`, so every
lineage configures Alembic the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, text

from services.kit.config import MeshSettings
from services.kit.db import connect_args, database_url, schema_name

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(service: str) -> Config:
    """Alembic config for ``migrations/<service>``."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations" / service))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(ROOT / "migrations" / service / "versions"))
    return config


def upgrade(settings: MeshSettings, service: str, revision: str = "head") -> None:
    """Creates the service's schema (PostgreSQL) and migrates it to ``revision``."""
    url = database_url(settings, service, sync=True)
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
    url = database_url(settings, args.service, sync=True)
    engine = create_engine(url, connect_args=connect_args(settings, args.service))
    with engine.begin() as connection:
        config = alembic_config(args.service)
        config.attributes["connection"] = connection
        command.revision(config, message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
