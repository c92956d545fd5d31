"""mcp_servers: MCP servers a tenant registered, their headers encrypted

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-15 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("mcp_servers",)


def upgrade() -> None:
    op.create_table(
        "mcp_servers",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("header_names", sa.JSON(), nullable=False),
        sa.Column("headers_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("allowed_tools", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_mcp_servers")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_mcp_servers_tenant_id_request_id")),
    )
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("mcp_servers")
