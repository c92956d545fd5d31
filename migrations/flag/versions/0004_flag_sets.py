"""flag sets: per-tenant change revisions from one global change sequence

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("flag_sets",)


def upgrade() -> None:
    op.create_table(
        "flag_sets",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_flag_sets")),
    )
    with op.batch_alter_table("flag_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flag_sets_revision"), ["revision"], unique=False)
    sequence = op.create_table(
        "flag_change_sequence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flag_change_sequence")),
    )
    op.bulk_insert(sequence, [{"id": 1, "value": 0}])
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("flag_change_sequence")
    with op.batch_alter_table("flag_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flag_sets_revision"))
    op.drop_table("flag_sets")
