"""threads: conversations of ordered messages that runs continue; the thread a run continues

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("threads", "thread_messages")


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("thread_metadata", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_threads")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_threads_tenant_id_request_id")),
    )
    op.create_table(
        "thread_messages",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("thread_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tool_call", sa.JSON(), nullable=True),
        sa.Column("run", sa.String(length=500), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "thread_id"],
            ["threads.tenant_id", "threads.id"],
            name=op.f("fk_thread_messages_tenant_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "thread_id", "id", name=op.f("pk_thread_messages")),
        sa.UniqueConstraint(
            "tenant_id", "thread_id", "position", name=op.f("uq_thread_messages_tenant_id_thread_id_position")
        ),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thread_id", sa.String(length=63), nullable=False, server_default=""))
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("thread_id")
    op.drop_table("thread_messages")
    op.drop_table("threads")
