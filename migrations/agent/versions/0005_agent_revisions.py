"""agent revisions: immutable revisions of agents (AIP-162), soft-deleted agents, the revision a run used

Every agent from before gets its first revision, made from its configuration.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 10:00:00.000000
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("agent_revisions",)

_COPIED = (
    "display_name",
    "model",
    "instructions",
    "tools",
    "temperature",
    "max_output_tokens",
    "tool_choice",
)


def _first_revisions() -> None:
    """Gives every existing agent a first revision of its configuration.

    The schema owner reads every tenant's agents: on PostgreSQL, row-level security is
    not forced on ``agents`` while this runs (the new table's policy comes after).
    """
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE agents NO FORCE ROW LEVEL SECURITY")
    agents = sa.table(
        "agents",
        sa.column("tenant_id"),
        sa.column("id"),
        sa.column("create_time"),
        sa.column("revision_id"),
        sa.column("revision_create_time"),
        *(sa.column(name) for name in _COPIED),
    )
    revisions = sa.table(
        "agent_revisions",
        sa.column("tenant_id"),
        sa.column("agent_id"),
        sa.column("id"),
        sa.column("create_time"),
        *(sa.column(name) for name in _COPIED),
    )
    for row in bind.execute(sa.select(agents)).mappings().all():
        revision_id = secrets.token_hex(4)
        copied = {name: row[name] for name in _COPIED}
        bind.execute(
            sa.insert(revisions).values(
                tenant_id=row["tenant_id"],
                agent_id=row["id"],
                id=revision_id,
                create_time=row["create_time"],
                **copied,
            )
        )
        bind.execute(
            sa.update(agents)
            .where(agents.c.tenant_id == row["tenant_id"], agents.c.id == row["id"])
            .values(revision_id=revision_id, revision_create_time=row["create_time"])
        )
    if postgresql:
        op.execute("ALTER TABLE agents FORCE ROW LEVEL SECURITY")


def upgrade() -> None:
    op.create_table(
        "agent_revisions",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=False),
        sa.Column("tool_choice", sa.String(length=20), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "agent_id"],
            ["agents.tenant_id", "agents.id"],
            name=op.f("fk_agent_revisions_tenant_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "agent_id", "id", name=op.f("pk_agent_revisions")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision_id", sa.String(length=63), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("revision_create_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("delete_time", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("agent_revision_id", sa.String(length=63), nullable=False, server_default="")
        )
    _first_revisions()
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    # Deleted agents were kept for their runs; before revisions, deleting an agent deleted them
    # (every tenant's: row-level security is not forced on the two tables meanwhile).
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE runs NO FORCE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE agents NO FORCE ROW LEVEL SECURITY")
    op.execute(
        "DELETE FROM runs WHERE EXISTS (SELECT 1 FROM agents WHERE agents.tenant_id = runs.tenant_id"
        " AND agents.id = runs.agent_id AND agents.delete_time IS NOT NULL)"
    )
    op.execute("DELETE FROM agents WHERE delete_time IS NOT NULL")
    if postgresql:
        op.execute("ALTER TABLE runs FORCE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE agents FORCE ROW LEVEL SECURITY")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("agent_revision_id")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("delete_time")
        batch_op.drop_column("revision_create_time")
        batch_op.drop_column("revision_id")
    op.drop_table("agent_revisions")
