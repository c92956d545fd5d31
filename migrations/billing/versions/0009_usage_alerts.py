"""usage alerts: thresholds of a meter's usage per billing period, their firings and notifications

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 20:30:00.000000
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
TENANT_TABLES = ("usage_alerts", "usage_alert_events", "notification_outbox")


def upgrade() -> None:
    op.create_table(
        "usage_alerts",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("meter", sa.String(length=63), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_usage_alerts")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_usage_alerts_tenant_id_request_id")),
    )
    op.create_table(
        "usage_alert_events",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("alert_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("meter", sa.String(length=63), nullable=False),
        sa.Column("threshold_type", sa.String(length=20), nullable=False),
        sa.Column("threshold_value", sa.Float(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("threshold_quantity", sa.Float(), nullable=False),
        sa.Column("limit", sa.Float(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "alert_id"],
            ["usage_alerts.tenant_id", "usage_alerts.id"],
            name=op.f("fk_usage_alert_events_tenant_id_usage_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "alert_id", "id", name=op.f("pk_usage_alert_events")),
        sa.UniqueConstraint(
            "tenant_id",
            "alert_id",
            "period_start",
            "threshold_type",
            "threshold_value",
            name="uq_usage_alert_events_firing",
        ),
    )
    op.create_table(
        "notification_outbox",
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=1024), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id", name=op.f("pk_notification_outbox")),
    )
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notification_outbox_time"), ["time"], unique=False)
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_outbox_time"))
    op.drop_table("notification_outbox")
    op.drop_table("usage_alert_events")
    op.drop_table("usage_alerts")
