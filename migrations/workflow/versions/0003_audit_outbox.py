"""audit outbox: audit events committed with their changes, relayed to auth

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:57:14.154155
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# New tables with a tenant_id column.
TENANT_TABLES = ("audit_outbox",)


def upgrade() -> None:
    op.create_table(
        "audit_outbox",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("principal_kind", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("resource", sa.String(length=500), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_outbox")),
    )
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_outbox_time"), ["time"], unique=False)

    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_outbox_time"))

    op.drop_table("audit_outbox")
