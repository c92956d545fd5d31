"""usage outbox: runs' usage events committed with the run state they meter, relayed to billing

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 20:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("usage_outbox",)


def upgrade() -> None:
    op.create_table(
        "usage_outbox",
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=1024), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id", name=op.f("pk_usage_outbox")),
    )
    with op.batch_alter_table("usage_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_outbox_time"), ["time"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("principal", sa.String(length=300), nullable=False, server_default=""))
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("principal")
    with op.batch_alter_table("usage_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_outbox_time"))
    op.drop_table("usage_outbox")
