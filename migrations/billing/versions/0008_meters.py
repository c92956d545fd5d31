"""meters: the meters tenants define over their usage events

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("meters",)


def upgrade() -> None:
    op.create_table(
        "meters",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("aggregation", sa.String(length=20), nullable=False),
        sa.Column("value_property", sa.String(length=200), nullable=False),
        sa.Column("group_by", sa.JSON(), nullable=False),
        sa.Column("late_event_grace_seconds", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=63), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_meters")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_meters_tenant_id_request_id")),
    )
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("meters")
