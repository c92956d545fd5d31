"""row-level security: tenant_isolation policies, the orchestrall_app role's grants

PostgreSQL only (a no-op on SQLite); see services.kit.migrate.enable_tenant_isolation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

from services.kit.migrate import (
    disable_tenant_isolation,
    enable_tenant_isolation,
    grant_app_role,
    revoke_app_role,
)

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables with a tenant_id column at this revision.
TENANT_TABLES = ("workflows", "workflow_runs")


def upgrade() -> None:
    grant_app_role()
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    revoke_app_role()
