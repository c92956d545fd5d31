"""usage event key includes the tenant: (tenant_id, source, event_id)

Under row-level security an ON CONFLICT on (source, event_id) would still match
another tenant's hidden row and drop the new event as a duplicate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_constraint("pk_usage_events", type_="primary")
        batch_op.create_primary_key("pk_usage_events", ["tenant_id", "source", "event_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_constraint("pk_usage_events", type_="primary")
        batch_op.create_primary_key("pk_usage_events", ["source", "event_id"])
