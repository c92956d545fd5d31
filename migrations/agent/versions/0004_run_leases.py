"""run leases: the replica executing a run and when its lease expires

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("executor", sa.String(length=100), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("lease_expire_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_runs_state_lease", ["state", "lease_expire_time"], unique=False)
    # Runs in progress from before have no lease: the sweeper fails them as interrupted.


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_state_lease")
        batch_op.drop_column("lease_expire_time")
        batch_op.drop_column("executor")
