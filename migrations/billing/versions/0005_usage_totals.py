"""usage totals: a running total per tenant, meter and billing period, backfilled from the events

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("usage_totals",)


def upgrade() -> None:
    op.create_table(
        "usage_totals",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("meter", sa.String(length=63), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "meter", "period_start", name=op.f("pk_usage_totals")),
    )
    # Billing periods are calendar months in UTC (services.billing.plans.period_of).
    if op.get_bind().dialect.name == "postgresql":
        month = "date_trunc('month', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:  # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text
        month = "strftime('%Y-%m-01 00:00:00.000000', time)"
    op.execute(
        "INSERT INTO usage_totals (tenant_id, meter, period_start, quantity, event_count)"
        f" SELECT tenant_id, meter, {month}, SUM(quantity), COUNT(*) FROM usage_events"
        f" GROUP BY tenant_id, meter, {month}"
    )
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("usage_totals")
