"""http_tools, notification_channels, notification_deliveries: tenants' HTTP tools and notifications

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("http_tools", "notification_channels", "notification_deliveries")


def upgrade() -> None:
    op.create_table(
        "http_tools",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("url_template", sa.String(length=2000), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("auth_header_name", sa.String(length=100), nullable=False),
        sa.Column("auth_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("max_response_bytes", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_http_tools")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_http_tools_tenant_id_request_id")),
    )
    op.create_table(
        "notification_channels",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secrets_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_notification_channels")),
        sa.UniqueConstraint(
            "tenant_id", "request_id", name=op.f("uq_notification_channels_tenant_id_request_id")
        ),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("channel_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=2000), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "channel_id", "id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint(
            "tenant_id",
            "channel_id",
            "request_id",
            name=op.f("uq_notification_deliveries_tenant_id_channel_id_request_id"),
        ),
    )
    op.create_index(
        "ix_notification_deliveries_due", "notification_deliveries", ["state", "next_attempt_time"]
    )
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_index("ix_notification_deliveries_due", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_channels")
    op.drop_table("http_tools")
