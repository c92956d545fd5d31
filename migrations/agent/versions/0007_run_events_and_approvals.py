"""runs in the background: their event log, cancellation, and tool calls waiting for approval

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("run_events",)


def upgrade() -> None:
    op.create_table(
        "run_events",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("run_id", sa.String(length=63), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("event", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "run_id", "sequence", name=op.f("pk_run_events")),
    )
    for table in ("agents", "agent_revisions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("approval_required_tools", sa.JSON(), nullable=False, server_default="[]")
            )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_sequence", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("pending_tool_calls", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("approval_request_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("cancel_time", sa.DateTime(timezone=True), nullable=True))
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for column in ("cancel_time", "approval_request_id", "pending_tool_calls", "checkpoint", "last_sequence"):
            batch_op.drop_column(column)
    for table in ("agent_revisions", "agents"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("approval_required_tools")
    op.drop_table("run_events")
