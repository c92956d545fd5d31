"""durable engine: revisions, run history and signals; the DBOS system schema

Each workflow's steps become its first revision (a straight line: each step depends
on the one before). On PostgreSQL the DBOS system tables are created in the schema
``<service schema>_dbos`` with the migration role, and the services' role is granted
what DBOS needs (``DBOS.migrate``); on SQLite DBOS keeps its own file, which it
creates at launch.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.db import APP_ROLE
from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("workflow_revisions", "workflow_run_events", "workflow_signals")
FIRST_REVISION = "1"


def _definition(steps: list[dict]) -> dict:
    """The first revision of a workflow of the old shape: a line of agent steps."""
    converted = []
    for i, step in enumerate(steps):
        agent_run = {"agent": step["agent"]}
        if step.get("input_template"):
            agent_run["input_template"] = step["input_template"]
        converted.append(
            {"id": step["id"], **({"depends_on": [steps[i - 1]["id"]]} if i else {}), "agent_run": agent_run}
        )
    return {"steps": converted}


def upgrade() -> None:
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("revision_id", sa.String(length=63), nullable=False, server_default=FIRST_REVISION)
        )
        batch_op.add_column(sa.Column("revision_create_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("definition", sa.JSON(), nullable=True))
    op.create_table(
        "workflow_revisions",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("workflow_id", sa.String(length=63), nullable=False),
        sa.Column("revision_id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "workflow_id"],
            ["workflows.tenant_id", "workflows.id"],
            name=op.f("fk_workflow_revisions_tenant_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "workflow_id", "revision_id", name=op.f("pk_workflow_revisions")
        ),
    )
    with op.batch_alter_table("workflow_revisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflow_revisions_create_time"), ["create_time"], unique=False)
    connection = op.get_bind()
    workflows = sa.table(
        "workflows",
        sa.column("tenant_id", sa.String),
        sa.column("id", sa.String),
        sa.column("display_name", sa.String),
        sa.column("steps", sa.JSON),
        sa.column("create_time", sa.DateTime(timezone=True)),
        sa.column("revision_create_time", sa.DateTime(timezone=True)),
        sa.column("definition", sa.JSON),
    )
    revisions = sa.table(
        "workflow_revisions",
        sa.column("tenant_id", sa.String),
        sa.column("workflow_id", sa.String),
        sa.column("revision_id", sa.String),
        sa.column("display_name", sa.String),
        sa.column("definition", sa.JSON),
        sa.column("create_time", sa.DateTime(timezone=True)),
    )
    for row in connection.execute(sa.select(workflows)).mappings().all():
        definition = _definition(row["steps"])
        key = (workflows.c.tenant_id == row["tenant_id"]) & (workflows.c.id == row["id"])
        connection.execute(
            sa.update(workflows)
            .where(key)
            .values(definition=definition, revision_create_time=row["create_time"])
        )
        connection.execute(
            sa.insert(revisions).values(
                tenant_id=row["tenant_id"],
                workflow_id=row["id"],
                revision_id=FIRST_REVISION,
                display_name=row["display_name"],
                definition=definition,
                create_time=row["create_time"],
            )
        )
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.alter_column("revision_create_time", nullable=False)
        batch_op.alter_column("definition", nullable=False)
        batch_op.alter_column("revision_id", server_default=None)
        batch_op.drop_column("steps")

    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("revision_id", sa.String(length=63), nullable=False, server_default=FIRST_REVISION)
        )
        batch_op.add_column(sa.Column("trigger", sa.String(length=500), nullable=False, server_default="api"))
        batch_op.add_column(sa.Column("cancel_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_sequence", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.alter_column("revision_id", server_default=None)
        batch_op.alter_column("trigger", server_default=None)
        batch_op.alter_column("last_sequence", server_default=None)

    op.create_table(
        "workflow_run_events",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("run_id", sa.String(length=63), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("step_id", sa.String(length=63), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "run_id"],
            ["workflow_runs.tenant_id", "workflow_runs.id"],
            name=op.f("fk_workflow_run_events_tenant_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "run_id", "sequence", name=op.f("pk_workflow_run_events")),
        sa.UniqueConstraint(
            "tenant_id", "run_id", "dedup_key", name=op.f("uq_workflow_run_events_tenant_id_run_id_dedup_key")
        ),
    )
    op.create_table(
        "workflow_signals",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("run_id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "run_id"],
            ["workflow_runs.tenant_id", "workflow_runs.id"],
            name=op.f("fk_workflow_signals_tenant_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_workflow_signals")),
        sa.UniqueConstraint(
            "tenant_id", "run_id", "request_id", name=op.f("uq_workflow_signals_tenant_id_run_id_request_id")
        ),
    )
    with op.batch_alter_table("workflow_signals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflow_signals_run_id"), ["run_id"], unique=False)
    enable_tenant_isolation(TENANT_TABLES)
    if connection.dialect.name == "postgresql":
        _migrate_dbos(connection)


def _migrate_dbos(connection: sa.Connection) -> None:
    """Creates or migrates DBOS's system tables next to the service's schema, for the services' role."""
    from dbos import DBOS

    from services.workflow.engine import dbos_schema

    url = connection.engine.url.render_as_string(hide_password=False)
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar_one()
    DBOS.migrate(url, schema=dbos_schema(schema), application_role=APP_ROLE)


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        from services.workflow.engine import dbos_schema

        schema = connection.exec_driver_sql("SELECT current_schema()").scalar_one()
        op.execute(f'DROP SCHEMA IF EXISTS "{dbos_schema(schema)}" CASCADE')
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("workflow_signals")
    op.drop_table("workflow_run_events")
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_column("last_sequence")
        batch_op.drop_column("cancel_time")
        batch_op.drop_column("trigger")
        batch_op.drop_column("revision_id")
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.add_column(sa.Column("steps", sa.JSON(), nullable=False, server_default="[]"))
    op.drop_table("workflow_revisions")
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.drop_column("definition")
        batch_op.drop_column("revision_create_time")
        batch_op.drop_column("revision_id")
