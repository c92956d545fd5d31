"""flag revisions: every change to a flag kept (AIP-162), the flag's current revision

Every flag from before gets a first revision (action CREATE, no principal: who made
it was not recorded), made from its definition.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 17:30:00.000000
"""

import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("flag_revisions",)


def _definition(row: Any) -> dict[str, Any]:
    """The flagd flag definition of a flag row (as services.flag.definitions wrote it at this revision)."""
    definition: dict[str, Any] = {
        "state": row["state"],
        "variants": row["variants"],
        "defaultVariant": row["default_variant"],
    }
    if row["targeting"]:
        definition["targeting"] = row["targeting"]
    if row["description"]:
        definition["metadata"] = {"description": row["description"]}
    return definition


def _first_revisions() -> None:
    """Gives every existing flag a first revision of its definition.

    The schema owner reads every tenant's flags: on PostgreSQL, row-level security is
    not forced on ``flags`` while this runs (the new table's policy comes after).
    """
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE flags NO FORCE ROW LEVEL SECURITY")
    flags = sa.table(
        "flags",
        sa.column("tenant_id"),
        sa.column("key"),
        sa.column("state"),
        sa.column("variants", sa.JSON()),
        sa.column("default_variant"),
        sa.column("targeting", sa.JSON()),
        sa.column("description"),
        sa.column("update_time"),
        sa.column("revision_id"),
    )
    revisions = sa.table(
        "flag_revisions",
        sa.column("tenant_id"),
        sa.column("flag_key"),
        sa.column("id"),
        sa.column("sequence"),
        sa.column("action"),
        sa.column("definition", sa.JSON()),
        sa.column("diff", sa.JSON()),
        sa.column("principal"),
        sa.column("rollback_revision_id"),
        sa.column("request_id"),
        sa.column("create_time"),
    )
    for row in bind.execute(sa.select(flags)).mappings().all():
        revision_id = secrets.token_hex(4)
        definition = _definition(row)
        bind.execute(
            sa.insert(revisions).values(
                tenant_id=row["tenant_id"],
                flag_key=row["key"],
                id=revision_id,
                sequence=1,
                action="CREATE",
                definition=definition,
                diff=[{"op": "add", "path": f"/{name}", "value": definition[name]} for name in sorted(definition)],
                principal="",
                rollback_revision_id="",
                request_id=None,
                create_time=row["update_time"],
            )
        )
        bind.execute(
            sa.update(flags)
            .where(flags.c.tenant_id == row["tenant_id"], flags.c.key == row["key"])
            .values(revision_id=revision_id)
        )
    if postgresql:
        op.execute("ALTER TABLE flags FORCE ROW LEVEL SECURITY")


def upgrade() -> None:
    op.create_table(
        "flag_revisions",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("flag_key", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("diff", sa.JSON(), nullable=False),
        sa.Column("principal", sa.String(length=300), nullable=False),
        sa.Column("rollback_revision_id", sa.String(length=63), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "flag_key", "id", name=op.f("pk_flag_revisions")),
        sa.UniqueConstraint(
            "tenant_id", "flag_key", "sequence", name=op.f("uq_flag_revisions_tenant_id_flag_key_sequence")
        ),
        sa.UniqueConstraint(
            "tenant_id",
            "request_id",
            "flag_key",
            name=op.f("uq_flag_revisions_tenant_id_request_id_flag_key"),
        ),
    )
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision_id", sa.String(length=63), nullable=False, server_default=""))
    _first_revisions()
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_column("revision_id")
    op.drop_table("flag_revisions")
