"""reservations: quantities of meters held for a unit of work until it settles, is released or expires

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("reservations", "reservation_meters")


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=1024), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_quantities", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_reservations")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reservations_tenant_id_state_expire_time", ["tenant_id", "state", "expire_time"], unique=False
        )
    op.create_table(
        "reservation_meters",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("reservation_id", sa.String(length=63), nullable=False),
        sa.Column("meter", sa.String(length=63), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "reservation_id"],
            ["reservations.tenant_id", "reservations.id"],
            name=op.f("fk_reservation_meters_tenant_id_reservations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "reservation_id", "meter", name=op.f("pk_reservation_meters")),
    )
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("reservation_meters")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_tenant_id_state_expire_time")
    op.drop_table("reservations")
