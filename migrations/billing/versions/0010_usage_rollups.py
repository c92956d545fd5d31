"""usage rollups: the built-in meters' usage per 15-minute bucket and group, for QueryUsage

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("usage_rollups",)
#: Events read per query of the backfill.
CHUNK = 10_000


def _backfill() -> None:
    """Adds the events recorded before this revision to their rollups, as ingestion adds new ones."""
    from services.billing.rollups import KEYS, bucket_of, upsert_statement, value_text

    bind = op.get_bind()
    events = sa.table(
        "usage_events",
        sa.column("tenant_id"),
        sa.column("meter"),
        sa.column("time", sa.DateTime(timezone=True)),
        sa.column("data", sa.JSON()),
        sa.column("quantity"),
    )
    sums: dict[tuple[object, ...], list[float]] = {}
    query = sa.select(events.c.tenant_id, events.c.meter, events.c.time, events.c.data, events.c.quantity)
    for tenant_id, meter, time, data, quantity in bind.execute(query.where(events.c.meter != "")):
        key = (tenant_id, meter, bucket_of(time), *(value_text((data or {}).get(k)) for k in KEYS))
        found = sums.setdefault(key, [0.0, 0])
        found[0] += quantity
        found[1] += 1
    names = ["tenant_id", "meter", "bucket_start", *KEYS]
    rows = [
        {**dict(zip(names, key, strict=True)), "quantity": q, "event_count": int(n)}
        for key, (q, n) in sorted(sums.items())
    ]
    for start in range(0, len(rows), CHUNK):
        bind.execute(upsert_statement(bind.dialect.name), rows[start : start + CHUNK])


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("meter", sa.String(length=63), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("principal", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "meter", "bucket_start", "agent", "model", "principal", name=op.f("pk_usage_rollups")
        ),
    )
    _backfill()
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("usage_rollups")
