"""usage events deduplicated by their own key: ``(tenant_id, source, event_id)`` is the primary key again

``usage_event_keys`` (0007) kept each event's key for 35 days, so that a key could be
recorded again after the window; claiming a key there cost as much database time as
recording the event (``benchmark/ingest.py``). Events are now recorded once for as long
as they are kept, by the events table's own key, and the keys table goes. An event that
was sent again after the old window and recorded a second time keeps its row and its
usage: its ``event_id`` gains ``@`` and its ``ingest_time``, so that keys are unique.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_TABLES = ("usage_event_keys",)


def upgrade() -> None:
    """Drops ``usage_event_keys`` and makes ``(tenant_id, source, event_id)`` the events' key."""
    disable_tenant_isolation(KEY_TABLES)
    with op.batch_alter_table("usage_event_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_event_keys_ingest_time"))
    op.drop_table("usage_event_keys")
    op.execute(
        "UPDATE usage_events SET event_id ="
        " substr(event_id, 1, 200) || '@' || CAST(ingest_time AS VARCHAR(40))"
        " WHERE EXISTS (SELECT 1 FROM usage_events AS first WHERE first.tenant_id = usage_events.tenant_id"
        " AND first.source = usage_events.source AND first.event_id = usage_events.event_id"
        " AND first.ingest_time < usage_events.ingest_time)"
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_constraint("pk_usage_events", type_="primary")
        batch_op.create_primary_key("pk_usage_events", ["tenant_id", "source", "event_id"])


def downgrade() -> None:
    """Brings back 0007's keys table, holding every recorded event's key, and its events' key."""
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_constraint("pk_usage_events", type_="primary")
        batch_op.create_primary_key("pk_usage_events", ["tenant_id", "source", "event_id", "ingest_time"])
    op.create_table(
        "usage_event_keys",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("ingest_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "source", "event_id", name=op.f("pk_usage_event_keys")),
    )
    with op.batch_alter_table("usage_event_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_event_keys_ingest_time"), ["ingest_time"], unique=False)
    op.execute(
        "INSERT INTO usage_event_keys (tenant_id, source, event_id, ingest_time)"
        " SELECT tenant_id, source, event_id, ingest_time FROM usage_events"
    )
    enable_tenant_isolation(KEY_TABLES)
