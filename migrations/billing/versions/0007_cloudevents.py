"""usage events as CloudEvents: type and data columns; deduplication keys in their own table, swept

Events recorded before carry the type of their built-in meter
(``dev.orchestrall.usage.{meter}``) and ``{"quantity": quantity}`` as data, as the
``meter``/``quantity`` shorthand of ``IngestUsageEvents`` reads. Deduplication moves to
``usage_event_keys`` (a key per event recorded in the window, swept after it), so the
events' own key gains ``ingest_time``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("usage_event_keys",)
EVENT_DATA = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("type", sa.String(length=255), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("data", EVENT_DATA, nullable=True))
    data = "jsonb_build_object('quantity', quantity)" if postgresql else "json_object('quantity', quantity)"
    op.execute(f"UPDATE usage_events SET type = 'dev.orchestrall.usage.' || meter, data = {data}")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.alter_column("type", server_default=None)
        batch_op.alter_column("data", nullable=False)
        batch_op.drop_constraint("pk_usage_events", type_="primary")
        batch_op.create_primary_key("pk_usage_events", ["tenant_id", "source", "event_id", "ingest_time"])
        batch_op.create_index(
            "ix_usage_events_tenant_id_type_time", ["tenant_id", "type", "time"], unique=False
        )
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
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("usage_event_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_event_keys_ingest_time"))
    op.drop_table("usage_event_keys")
    # Events of types without a built-in meter have no place in the old table.
    op.execute("DELETE FROM usage_events WHERE meter = ''")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_events_tenant_id_type_time")
        batch_op.drop_constraint("pk_usage_events", type_="primary")
        batch_op.create_primary_key("pk_usage_events", ["tenant_id", "source", "event_id"])
        batch_op.drop_column("data")
        batch_op.drop_column("type")
