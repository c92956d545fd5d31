"""Plans, subscriptions and invoices through the real billing server over mTLS.

The operator is the CLI's mTLS identity (``cli`` in the kit's policy table); tenants
call with their admin token, as the gateway forwards it. Every test makes plans of its
own (the price list is shared by the session's tenants) and never changes the default.
The period-end sweep is run on an injected clock a month ahead, on the mesh's database.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import secrets
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_UP, Decimal

import grpc
import pypdf
import pytest
from google.protobuf import field_mask_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing.plans import FREE_LIMITS, period_of
from services.billing.service import BillingService
from services.kit.db import Database, create_engine
from services.kit.timestamps import utcnow
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant

Model = res.Charge.Model


@pytest.fixture
async def operator(mesh: Mesh) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    """The billing service called as the operator (the CLI's certificate, no token)."""
    async with mesh.channel("billing", identity="cli") as channel:
        yield pb_grpc.BillingServiceStub(channel)


@pytest.fixture
async def agent(mesh: Mesh) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    """The billing service called as the agent service (it meters usage and reserves)."""
    async with mesh.channel("billing", identity="agent") as channel:
        yield pb_grpc.BillingServiceStub(channel)


@pytest.fixture
async def billing(mesh: Mesh) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    """The billing service as the gateway calls it (tenants pass their token)."""
    async with mesh.channel("billing") as channel:
        yield pb_grpc.BillingServiceStub(channel)


def graduated_plan(fixed_fee: int = 2900, runs_limit: float = 1000) -> res.Plan:
    """A plan priced in USD cents: $29.00 a month; agent runs graduated (10 free, $1.00 to 100, then
    $0.50), input tokens $0.000002 each after 1,000 free, output tokens $5.00 per started 1,000."""
    return res.Plan(
        display_name="Pro",
        currency_code="USD",
        fixed_fee=fixed_fee,
        request_rate=50,
        charges=[
            res.Charge(
                meter="agent_runs",
                model=Model.MODEL_GRADUATED,
                tiers=[
                    res.PriceTier(up_to=10, unit_amount="0"),
                    res.PriceTier(up_to=100, unit_amount="100"),
                    res.PriceTier(unit_amount="50"),
                ],
                hard_limit=runs_limit,
                soft_limit=runs_limit * 0.8,
            ),
            res.Charge(
                meter="model_input_tokens",
                model=Model.MODEL_PER_UNIT,
                unit_amount="0.0002",
                included_quantity=1000,
            ),
            res.Charge(
                meter="model_output_tokens", model=Model.MODEL_PACKAGE, unit_amount="500", package_size=1000
            ),
        ],
    )


async def new_plan(operator: pb_grpc.BillingServiceStub, plan: res.Plan) -> res.Plan:
    return await operator.CreatePlan(pb.CreatePlanRequest(plan=plan, plan_id=f"pro-{secrets.token_hex(4)}"))


async def subscribe(billing: pb_grpc.BillingServiceStub, tenant: Tenant, plan: str) -> res.Subscription:
    return await billing.UpdateSubscription(
        pb.UpdateSubscriptionRequest(
            subscription=res.Subscription(name=f"{tenant.name}/subscription", plan=plan),
            update_mask=field_mask_pb2.FieldMask(paths=["plan"]),
        ),
        metadata=tenant.metadata,
    )


async def ingest(agent: pb_grpc.BillingServiceStub, tenant: Tenant, **quantities: float) -> None:
    await agent.IngestUsageEvents(
        pb.IngestUsageEventsRequest(
            events=[
                res.UsageEvent(id=f"u-{meter}", source="//test", tenant=tenant.name, meter=meter, quantity=q)
                for meter, q in quantities.items()
            ]
        )
    )


async def close_last_period(mesh: Mesh) -> None:
    """Runs the period-end sweep as a replica would a month from now, on the mesh's database."""
    _, end = period_of(utcnow())
    db = Database(create_engine(mesh.config.settings("billing"), "billing"))
    try:
        await BillingService(db, lambda: end + dt.timedelta(minutes=5)).close_periods()
    finally:
        await db.close()


def prorated(fee: int, now: dt.datetime) -> int:
    """A plan's fee for the days from ``now``'s UTC day to its period's end, rounded half up (by hand)."""
    start, end = period_of(now)
    days, period_days = (end - start).days - (now - start).days, (end - start).days
    return int((Decimal(fee) * days / period_days).quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def test_the_price_list_is_the_operators_and_every_tenant_reads_it(
    mesh: Mesh, operator: pb_grpc.BillingServiceStub, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh)
    request = pb.CreatePlanRequest(
        plan=graduated_plan(), plan_id=f"pro-{secrets.token_hex(4)}", request_id="r1"
    )
    made = await operator.CreatePlan(request)
    assert await operator.CreatePlan(request) == made, "a retry returns the first plan"
    assert (made.state, made.default, made.charges[2].package_size) == (res.Plan.STATE_ACTIVE, False, 1000)
    read = await billing.GetPlan(pb.GetPlanRequest(name=made.name), metadata=tenant.metadata)
    assert read == made
    free = await billing.GetPlan(pb.GetPlanRequest(name="plans/free"), metadata=tenant.metadata)
    assert free.default and {c.meter: c.hard_limit for c in free.charges} == FREE_LIMITS
    listed = await billing.ListPlans(pb.ListPlansRequest(page_size=1000), metadata=tenant.metadata)
    assert {"plans/free", made.name} <= {p.name for p in listed.plans}

    bad = graduated_plan()
    bad.currency_code = "XYZ"
    bad.charges[0].tiers[1].up_to = 5
    bad.charges.add(meter="gpu_hours")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.CreatePlan(pb.CreatePlanRequest(plan=bad, plan_id="bad"))
    assert error_info(caught.value).reason == "INVALID_PLAN"
    assert field_violations(caught.value) == [
        "plan.currency_code",
        "plan.charges[0].tiers[1].up_to",
        "plan.charges[3].meter",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.ArchivePlan(pb.ArchivePlanRequest(name="plans/free"))
    assert error_info(caught.value).reason == "DEFAULT_PLAN"
    archived = await operator.ArchivePlan(pb.ArchivePlanRequest(name=made.name))
    assert archived.state == res.Plan.STATE_ARCHIVED
    listed = await billing.ListPlans(pb.ListPlansRequest(page_size=1000), metadata=tenant.metadata)
    assert made.name not in {p.name for p in listed.plans}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await subscribe(billing, tenant, made.name)
    assert error_info(caught.value).reason == "PLAN_ARCHIVED"


async def test_a_tenant_changes_plan_and_its_hard_limits_hold_under_a_burst(
    mesh: Mesh,
    operator: pb_grpc.BillingServiceStub,
    agent: pb_grpc.BillingServiceStub,
    billing: pb_grpc.BillingServiceStub,
) -> None:
    tenant = await new_tenant(mesh)
    name = f"{tenant.name}/subscription"
    first = await billing.GetSubscription(pb.GetSubscriptionRequest(name=name), metadata=tenant.metadata)
    assert (first.plan, first.state, first.HasField("update_time")) == (
        "plans/free",
        res.Subscription.STATE_ACTIVE,
        False,
    )
    plan = await new_plan(operator, graduated_plan(runs_limit=5))
    changed = await subscribe(billing, tenant, plan.name)
    assert (changed.plan, changed.state) == (plan.name, res.Subscription.STATE_ACTIVE)
    summary = await billing.GetUsageSummary(
        pb.GetUsageSummaryRequest(name=f"{tenant.name}/usageSummary"), metadata=tenant.metadata
    )
    assert summary.plan == plan.name.removeprefix("plans/")
    assert {m.meter: m.limit for m in summary.meters}["agent_runs"] == 5

    async def reserve(i: int) -> bool:
        try:
            await agent.CreateReservation(
                pb.CreateReservationRequest(
                    parent=tenant.name,
                    reservation_id=f"burst-{i}",
                    reservation=res.Reservation(quantities={"agent_runs": 1, "model_input_tokens": 100}),
                )
            )
        except grpc.aio.AioRpcError as error:
            assert error_info(error).reason == "QUOTA_EXCEEDED"
            return False
        return True

    granted = await asyncio.gather(*(reserve(i) for i in range(12)))
    assert sum(granted) == 5, "exactly the plan's hard limit is held, never more"
    check = await agent.CheckEntitlement(pb.CheckEntitlementRequest(tenant=tenant.name, meter="agent_runs"))
    assert (check.limit, check.remaining) == (5, 0)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.UpdateSubscription(
            pb.UpdateSubscriptionRequest(
                subscription=res.Subscription(name=name, state=res.Subscription.STATE_CANCELED),
                update_mask=field_mask_pb2.FieldMask(paths=["state"]),
            ),
            metadata=tenant.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value).reason == "OPERATOR_ONLY_FIELD"
    canceled = await operator.UpdateSubscription(
        pb.UpdateSubscriptionRequest(
            subscription=res.Subscription(name=name, state=res.Subscription.STATE_CANCELED),
            update_mask=field_mask_pb2.FieldMask(paths=["state"]),
        )
    )
    assert canceled.state == res.Subscription.STATE_CANCELED and canceled.HasField("cancel_time")
    check = await agent.CheckEntitlement(pb.CheckEntitlementRequest(tenant=tenant.name, meter="agent_runs"))
    assert check.limit == FREE_LIMITS["agent_runs"], "a canceled subscription is limited as the default plan"


async def test_a_period_is_invoiced_finalized_once_and_rendered(
    mesh: Mesh,
    operator: pb_grpc.BillingServiceStub,
    agent: pb_grpc.BillingServiceStub,
    billing: pb_grpc.BillingServiceStub,
) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    plan = await new_plan(operator, graduated_plan())
    await subscribe(billing, tenant, plan.name)
    await ingest(agent, tenant, agent_runs=25, model_input_tokens=12_345_678, model_output_tokens=2001)
    # By hand: runs 10 free + 15 x 100 = 1500; input (12,345,678 - 1,000) x 0.0002 = 2468.9356 -> 2469;
    # output 3 started packages x 500 = 1500; the fee from today's day to the period's end, prorated.
    usage = {"agent_runs": 1500, "model_input_tokens": 2469, "model_output_tokens": 1500}
    fee = prorated(2900, utcnow())
    preview = await billing.PreviewInvoice(
        pb.PreviewInvoiceRequest(parent=tenant.name), metadata=tenant.metadata
    )
    assert preview.state == res.Invoice.STATE_DRAFT and not preview.number
    assert {line.meter: line.amount for line in preview.lines if line.meter} == usage
    assert [line.amount for line in preview.lines if line.kind == res.InvoiceLine.KIND_PRORATION] == [fee]
    assert preview.total == preview.subtotal == sum(usage.values()) + fee

    await close_last_period(mesh)
    start, _ = period_of(utcnow())
    name = f"{tenant.name}/invoices/period-{start.year:04d}-{start.month:02d}"
    draft = await billing.GetInvoice(pb.GetInvoiceRequest(name=name), metadata=tenant.metadata)
    assert (draft.state, draft.total, draft.currency_code) == (res.Invoice.STATE_DRAFT, preview.total, "USD")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.GetInvoice(pb.GetInvoiceRequest(name=name), metadata=other.metadata)
    assert error_info(caught.value).reason == "TENANT_MISMATCH"

    once, twice = await asyncio.gather(
        operator.FinalizeInvoice(pb.FinalizeInvoiceRequest(name=name)),
        operator.FinalizeInvoice(pb.FinalizeInvoiceRequest(name=name)),
    )
    assert once == twice, "finalizing twice makes one invoice with one number"
    assert once.state == res.Invoice.STATE_OPEN and once.number.startswith(f"ORC-{utcnow().year}-")
    again = await operator.FinalizeInvoice(pb.FinalizeInvoiceRequest(name=name))
    assert again == once

    pdf = await billing.GetInvoicePdf(pb.GetInvoicePdfRequest(name=name), metadata=tenant.metadata)
    assert pdf.content_type == "application/pdf"
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.data)).pages)
    total = f"{once.total // 100}.{once.total % 100:02d} USD"
    assert once.number in text and total in text

    exported = await billing.ExportInvoices(
        pb.ExportInvoicesRequest(parent=tenant.name), metadata=tenant.metadata
    )
    assert exported.content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.data.decode())))
    assert sum(int(r["amount"]) for r in rows) == once.total
    assert {r["number"] for r in rows} == {once.number}

    paid = await operator.MarkInvoicePaid(pb.MarkInvoicePaidRequest(name=name))
    assert paid.state == res.Invoice.STATE_PAID and paid.number == once.number
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.VoidInvoice(pb.VoidInvoiceRequest(name=name))
    assert error_info(caught.value).reason == "INVOICE_NOT_OPEN"


async def test_concurrent_finalizations_take_gapless_numbers(
    mesh: Mesh, operator: pb_grpc.BillingServiceStub, agent: pb_grpc.BillingServiceStub
) -> None:
    tenants = [await new_tenant(mesh) for _ in range(6)]
    for tenant in tenants:
        await ingest(agent, tenant, agent_runs=1)
    await close_last_period(mesh)
    start, _ = period_of(utcnow())
    names = [f"{t.name}/invoices/period-{start.year:04d}-{start.month:02d}" for t in tenants]
    # Each invoice finalized twice, all at once: six numbers, consecutive, none twice.
    done = await asyncio.gather(
        *(operator.FinalizeInvoice(pb.FinalizeInvoiceRequest(name=n)) for n in names + names)
    )
    by_name = {invoice.name: invoice.number for invoice in done}
    assert [by_name[invoice.name] for invoice in done] == [invoice.number for invoice in done]
    sequence = sorted(int(number.rsplit("-", 1)[1]) for number in by_name.values())
    assert sequence == list(range(sequence[0], sequence[0] + len(names)))
    voided = await operator.VoidInvoice(pb.VoidInvoiceRequest(name=names[0]))
    assert voided.state == res.Invoice.STATE_VOID and voided.number == by_name[names[0]]
