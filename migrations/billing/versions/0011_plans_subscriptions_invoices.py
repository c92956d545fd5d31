"""plans, subscriptions, plan changes, invoices and invoice numbers; the built-in free plan

The free plan is seeded as the default plan, with the limits tenants had before plans
were data (services.billing.plans.FREE) and the gateway's default tenant rate, so
nothing changes for a tenant until an operator changes the price list.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 20:00:00.000000
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column (plans and invoice_number_counters belong to no tenant).
TENANT_TABLES = ("subscriptions", "plan_changes", "invoices")

# The free plan's hard limits per period, as services.billing.plans.FREE had them
# (copied, not imported: a migration keeps the values of its day).
FREE_LIMITS = {"agent_runs": 1000, "model_input_tokens": 2_000_000, "model_output_tokens": 500_000}
# The gateway's default tenant rate (gateway/envoy/settings.py, tenant_rate).
FREE_REQUEST_RATE = 200.0


def upgrade() -> None:
    plans = op.create_table(
        "plans",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("currency_code", sa.String(length=3), nullable=False),
        sa.Column("fixed_fee", sa.BigInteger(), nullable=False),
        sa.Column("charges", sa.JSON(), nullable=False),
        sa.Column("request_rate", sa.Float(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("trial_days", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("request_id", name=op.f("uq_plans_request_id")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("plan_id", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("trial_end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("cancel_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_subscriptions")),
    )
    op.create_table(
        "plan_changes",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("change_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_plan_id", sa.String(length=63), nullable=False),
        sa.Column("to_plan_id", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_plan_changes")),
    )
    op.create_index(
        "ix_plan_changes_tenant_id_change_time", "plan_changes", ["tenant_id", "change_time"], unique=False
    )
    op.create_table(
        "invoices",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("number", sa.String(length=63), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("currency_code", sa.String(length=3), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan_id", sa.String(length=63), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finalize_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
    )
    op.create_table(
        "invoice_number_counters",
        sa.Column("issuer", sa.String(length=20), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "year", name=op.f("pk_invoice_number_counters")),
    )
    enable_tenant_isolation(TENANT_TABLES)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    op.bulk_insert(
        plans,
        [
            {
                "id": "free",
                "display_name": "Free",
                "description": "The sign-up plan: no fees, hard limits per month.",
                "currency_code": "USD",
                "fixed_fee": 0,
                "charges": [
                    {
                        "meter": meter,
                        "model": "PER_UNIT",
                        "unit_amount": "0",
                        "package_size": 1,
                        "tiers": [],
                        "included_quantity": 0.0,
                        "hard_limit": float(limit),
                        "soft_limit": 0.0,
                    }
                    for meter, limit in FREE_LIMITS.items()
                ],
                "request_rate": FREE_REQUEST_RATE,
                "is_default": True,
                "trial_days": 0,
                "state": "ACTIVE",
                "request_id": None,
                "create_time": now,
                "update_time": now,
            }
        ],
    )


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("invoice_number_counters")
    op.drop_table("invoices")
    op.drop_index("ix_plan_changes_tenant_id_change_time", table_name="plan_changes")
    op.drop_table("plan_changes")
    op.drop_table("subscriptions")
    op.drop_table("plans")
