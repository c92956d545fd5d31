"""users, service accounts, API key expiry, signing key lifecycle, audit log and outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:57:11.700955
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# New tables with a tenant_id column.
TENANT_TABLES = ("audit_outbox", "users", "service_accounts", "audit_events")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("principal_kind", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("resource", sa.String(length=500), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_subject"), ["subject"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_time"), ["time"], unique=False)

    op.create_table(
        "audit_outbox",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("principal_kind", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("resource", sa.String(length=500), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_outbox")),
    )
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_outbox_time"), ["time"], unique=False)

    op.create_table(
        "service_accounts",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_service_accounts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_service_accounts")),
    )
    op.create_table(
        "users",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_users_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_users")),
        sa.UniqueConstraint("tenant_id", "email", name=op.f("uq_users_tenant_id_email")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_use_time", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activate_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True))
    # Keys made before rotation existed signed from their creation.
    op.execute("UPDATE signing_keys SET activate_time = create_time")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.alter_column("activate_time", nullable=False)

    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("expire_time")
        batch_op.drop_column("activate_time")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_use_time")
        batch_op.drop_column("expire_time")

    op.drop_table("users")
    op.drop_table("service_accounts")
    with op.batch_alter_table("audit_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_outbox_time"))

    op.drop_table("audit_outbox")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_time"))
        batch_op.drop_index(batch_op.f("ix_audit_events_subject"))

    op.drop_table("audit_events")
