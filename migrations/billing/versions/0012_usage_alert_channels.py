"""usage alert channels: the notification channels each firing of an alert is sent on

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds ``usage_alerts.notification_channels``, empty for the alerts made before."""
    op.add_column(
        "usage_alerts",
        sa.Column("notification_channels", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )


def downgrade() -> None:
    """Drops the column."""
    op.drop_column("usage_alerts", "notification_channels")
