"""The plan, subscription and invoice RPCs of ``BillingService``: protos in and out.

Plans are the operator's (written only over the CLI's mTLS identity, read by any
tenant member); a tenant's subscription is read by its members and changed by its
admins (the operator may set any field); invoices are read by the tenant and
finalized, paid or voided by the operator. Prices are rated by
:mod:`services.billing.pricing`, invoices built by :mod:`services.billing.invoices`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import field_mask_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import currencies, errors, invoice_documents, invoices, plan_store, pricing
from services.billing.models import (
    ChargeJson,
    InvoiceRow,
    InvoiceState,
    PlanChangeRow,
    PlanRow,
    PlanState,
    SubscriptionRow,
    SubscriptionState,
    TierJson,
)
from services.billing.plans import METERS, period_of
from services.kit.audit import note_resource
from services.kit.auth import current_principal, require_tenant
from services.kit.db import Database, Tx
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, invalid
from services.kit.fieldmask import update_paths
from services.kit.names import TENANT, ResourceName, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.timestamps import as_utc, from_timestamp, to_timestamp

PLAN = ResourceName.of(res.Plan)
SUBSCRIPTION = ResourceName.of(res.Subscription)
INVOICE = ResourceName.of(res.Invoice)
PLAN_STATES = EnumMap(PlanState, res.Plan.State, "STATE_")
SUBSCRIPTION_STATES = EnumMap(SubscriptionState, res.Subscription.State, "STATE_")
INVOICE_STATES = EnumMap(InvoiceState, res.Invoice.State, "STATE_")
CHARGE_MODELS = EnumMap(pricing.ChargeModel, res.Charge.Model, "MODEL_")
#: The operator: the workload name of the CLI's mTLS identity (services.kit.policy).
OPERATOR = "cli"
#: The issuer of invoice numbers (``ORC-2026-000001``).
ISSUER = "ORC"
#: The most invoices one CSV export holds (ten years of monthly invoices, and more).
MAX_EXPORTED_INVOICES = 1000

PLAN_MUTABLE = (
    "display_name",
    "description",
    "fixed_fee",
    "charges",
    "request_rate",
    "default",
    "trial_days",
)
PLAN_IGNORED = frozenset({"name", "state", "create_time", "update_time"})
SUBSCRIPTION_TENANT_FIELDS = ("plan", "cancel_at_period_end")
SUBSCRIPTION_OPERATOR_FIELDS = ("state", "trial_end_time")
SUBSCRIPTION_IGNORED = frozenset(
    {"name", "current_period_start_time", "current_period_end_time", "cancel_time", "update_time"}
)


def is_operator() -> bool:
    """Whether the caller is the operator: the CLI's mTLS identity, without a user token."""
    principal = current_principal()
    return principal.kind == "service" and principal.subject == OPERATOR


def _require_member(tenant_id: str) -> None:
    """Checks the caller acts for ``tenant_id`` (the operator acts for every tenant)."""
    if not is_operator():
        require_tenant(tenant_id)


# Plans ----------------------------------------------------------------------------------------------


def _amount_text(value: str) -> str:
    """Returns a contract-valid decimal amount in its stored form (``""`` is ``"0"``)."""
    return str(Decimal(value)) if value else "0"


def charge_json(message: res.Charge) -> ChargeJson:
    """Returns the stored form of a charge message (the contract's patterns hold already)."""
    model = CHARGE_MODELS.from_proto(message.model) or pricing.ChargeModel.PER_UNIT
    return ChargeJson(
        meter=message.meter,
        model=model.value,
        unit_amount=_amount_text(message.unit_amount),
        package_size=int(message.package_size) or (0 if model == pricing.ChargeModel.PACKAGE else 1),
        tiers=[
            TierJson(
                up_to=repr(t.up_to) if t.HasField("up_to") else None,
                unit_amount=_amount_text(t.unit_amount),
                flat_amount=_amount_text(t.flat_amount),
            )
            for t in message.tiers
        ],
        included_quantity=message.included_quantity,
        hard_limit=message.hard_limit,
        soft_limit=message.soft_limit,
    )


def _charge_message(stored: ChargeJson) -> res.Charge:
    message = res.Charge(
        meter=stored["meter"],
        model=CHARGE_MODELS.to_proto(stored["model"]),  # type: ignore[arg-type]
        unit_amount=stored["unit_amount"],
        package_size=stored["package_size"],
        included_quantity=stored["included_quantity"],
        hard_limit=stored["hard_limit"],
        soft_limit=stored["soft_limit"],
    )
    for tier in stored["tiers"]:
        added = message.tiers.add(unit_amount=tier["unit_amount"], flat_amount=tier["flat_amount"])
        if tier["up_to"] is not None:
            added.up_to = float(tier["up_to"])
    return message


def plan_to_proto(row: PlanRow) -> res.Plan:
    """Maps a plan to its resource."""
    return res.Plan(
        name=PLAN.format(row.id),
        display_name=row.display_name,
        description=row.description,
        currency_code=row.currency_code,
        fixed_fee=row.fixed_fee,
        charges=[_charge_message(c) for c in row.charges],
        request_rate=row.request_rate,
        default=row.is_default,
        trial_days=row.trial_days,
        state=PLAN_STATES.to_proto(row.state),  # type: ignore[arg-type]
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
    )


def _plan_fields(message: res.Plan, paths: tuple[str, ...]) -> dict[str, Any]:
    """Returns the fields of a plan message named in ``paths``, as column values."""
    values: dict[str, Any] = {}
    for path in paths:
        if path == "charges":
            values["charges"] = [charge_json(c) for c in message.charges]
        elif path == "default":
            values["is_default"] = message.default
        else:
            values[path] = getattr(message, path)
    return values


def plan_violations(row: PlanRow) -> list[FieldViolation]:
    """Returns a violation per rule the plan breaks (currency, meters, each charge's rules)."""
    found = []
    if currencies.minor_digits(row.currency_code) is None:
        found.append(
            FieldViolation("plan.currency_code", f"{row.currency_code!r} is not an ISO 4217 currency")
        )
    seen: set[str] = set()
    for i, stored in enumerate(row.charges):
        prefix = f"plan.charges[{i}]"
        meter = stored["meter"]
        if meter not in METERS:
            found.append(errors.unknown_meter_violation(f"{prefix}.meter", meter))
        elif meter in seen:
            found.append(FieldViolation(f"{prefix}.meter", f"names {meter!r} twice"))
        seen.add(meter)
        charge = invoices.charge_of(stored)
        found.extend(FieldViolation(path, text) for path, text in pricing.violations(charge, prefix))
    if not math.isfinite(row.request_rate):
        found.append(FieldViolation("plan.request_rate", "must be a finite number"))
    return found


def _checked_plan(row: PlanRow) -> PlanRow:
    found = plan_violations(row)
    if found:
        raise errors.invalid_plan(found)
    return row


def _update_plan(
    tx: Tx, plan_id: str, message: res.Plan, paths: tuple[str, ...], now: dt.datetime
) -> PlanRow | None:
    row = plan_store.get_plan(tx, plan_id, lock=True)
    if row is None:
        return None
    changes = {**_plan_fields(message, paths), "update_time": now}
    _checked_plan(dataclasses.replace(row, **changes))
    return plan_store.update_plan(tx, plan_id, changes)


class DefaultPlanArchived(Exception):
    """The default plan cannot be archived."""


def _archive_plan(tx: Tx, plan_id: str, now: dt.datetime) -> PlanRow | None:
    row = plan_store.get_plan(tx, plan_id, lock=True)
    if row is None or row.state == PlanState.ARCHIVED:
        return row
    if row.is_default:
        raise DefaultPlanArchived()
    return plan_store.update_plan(tx, plan_id, {"state": PlanState.ARCHIVED, "update_time": now})


# Subscriptions -------------------------------------------------------------------------------------


def subscription_to_proto(row: SubscriptionRow, now: dt.datetime) -> res.Subscription:
    """Maps a subscription to its resource; its current period is the calendar month (UTC) of ``now``."""
    start, end = period_of(now)
    state = row.state
    if (
        state == SubscriptionState.TRIALING
        and row.trial_end_time is not None
        and as_utc(row.trial_end_time) <= now
    ):
        state = SubscriptionState.ACTIVE
    message = res.Subscription(
        name=SUBSCRIPTION.format(row.tenant_id),
        plan=PLAN.format(row.plan_id),
        state=SUBSCRIPTION_STATES.to_proto(state),  # type: ignore[arg-type]
        current_period_start_time=to_timestamp(start),
        current_period_end_time=to_timestamp(end),
        cancel_at_period_end=row.cancel_at_period_end,
    )
    for field, value in (
        ("trial_end_time", row.trial_end_time),
        ("cancel_time", row.cancel_time),
        ("update_time", row.update_time),
    ):
        if value is not None:
            getattr(message, field).CopyFrom(to_timestamp(value))
    return message


def _update_subscription(
    tx: Tx, message: res.Subscription, paths: tuple[str, ...], now: dt.datetime
) -> SubscriptionRow:
    """Applies the named fields to the tenant's subscription, under its lock, in one transaction.

    Raises:
        errors: ``PLAN_NOT_FOUND``, ``PLAN_ARCHIVED``, ``CURRENCY_MISMATCH`` (nothing is written).
    """
    current = plan_store.lock_subscription(tx)
    values: dict[str, Any] = {"update_time": now}
    change = None
    if "plan" in paths and message.plan:
        (plan_id,) = PLAN.parse(message.plan, "subscription.plan")
        plan = plan_store.get_plan(tx, plan_id)
        if plan is None:
            raise errors.plan_not_found(message.plan)
        if plan_id != current.plan_id:
            if plan.state == PlanState.ARCHIVED:
                raise errors.plan_archived(message.plan)
            old = plan_store.plan_in_effect(tx, current)
            if old.currency_code != plan.currency_code:
                raise errors.currency_mismatch(message.plan, old.currency_code, plan.currency_code)
            values["plan_id"] = plan_id
            change = PlanChangeRow(tx.tenant_id, new_id(), now, old.id, plan_id)
            if current.state == SubscriptionState.CANCELED:
                values.update(state=SubscriptionState.ACTIVE, cancel_time=None)
            if plan.trial_days and current.trial_end_time is None:
                values.update(
                    state=SubscriptionState.TRIALING, trial_end_time=now + dt.timedelta(days=plan.trial_days)
                )
    if "cancel_at_period_end" in paths:
        values["cancel_at_period_end"] = message.cancel_at_period_end
    if "state" in paths:
        state = SUBSCRIPTION_STATES.from_proto(message.state)
        if state is None:
            raise invalid("subscription.state", "must be set when named in update_mask")
        values["state"] = state
        values["cancel_time"] = now if state == SubscriptionState.CANCELED else None
    if "trial_end_time" in paths:
        values["trial_end_time"] = (
            from_timestamp(message.trial_end_time) if message.HasField("trial_end_time") else None
        )
    row = dataclasses.replace(current, **values)
    if row.create_time is None:
        row = dataclasses.replace(row, create_time=now)
    return plan_store.save_subscription(tx, row, change)


# Invoices ------------------------------------------------------------------------------------------


def invoice_to_proto(row: InvoiceRow, *, preview: bool = False) -> res.Invoice:
    """Maps an invoice to its resource; a ``preview``, never stored, has no ``create_time``."""
    message = res.Invoice(
        name=INVOICE.format(row.tenant_id, row.id),
        number=row.number or "",
        state=INVOICE_STATES.to_proto(row.state),  # type: ignore[arg-type]
        currency_code=row.currency_code,
        period_start_time=to_timestamp(row.period_start),
        period_end_time=to_timestamp(row.period_end),
        plan=PLAN.format(row.plan_id),
        subtotal=row.subtotal,
        total=row.total,
    )
    if not preview:
        message.create_time.CopyFrom(to_timestamp(row.create_time))
    for line in row.lines:
        message.lines.add(
            kind=res.InvoiceLine.Kind.Value(f"KIND_{line['kind']}"),
            description=line["description"],
            plan=PLAN.format(line["plan_id"]),
            meter=line["meter"],
            quantity=line["quantity"],
            included_quantity=line["included_quantity"],
            tiers=[
                res.InvoiceLineTier(tier=t["tier"], quantity=t["quantity"], amount=t["amount"])
                for t in line["tiers"]
            ],
            amount=line["amount"],
        )
    for field, value in (
        ("finalize_time", row.finalize_time),
        ("paid_time", row.paid_time),
        ("void_time", row.void_time),
    ):
        if value is not None:
            getattr(message, field).CopyFrom(to_timestamp(value))
    return message


def _preview(tx: Tx, now: dt.datetime) -> InvoiceRow:
    """Returns the invoice the current period would have if it ended now (not stored)."""
    start, end = period_of(now)
    draft = invoices.build(plan_store.invoice_inputs(tx, start, end), start, end)
    return InvoiceRow(
        tenant_id=tx.tenant_id,
        id=invoices.invoice_id(start),
        number=None,
        state=InvoiceState.DRAFT,
        currency_code=draft.currency_code,
        period_start=start,
        period_end=end,
        plan_id=draft.plan_id,
        lines=draft.lines,
        subtotal=draft.subtotal,
        total=draft.total,
        create_time=now,
        finalize_time=None,
        paid_time=None,
        void_time=None,
    )


class PlanMethods:
    """The plan, subscription and invoice RPCs of ``BillingService`` (mixed into its servicer).

    Args:
        db: The billing database.
        clock: The time plans change, subscriptions change and invoices are made at.
    """

    def __init__(self, db: Database, clock: Callable[[], dt.datetime]) -> None:
        self._db = db
        self._clock = clock

    # Plans --------------------------------------------------------------------------------------

    async def GetPlan(self, request: pb.GetPlanRequest, context: grpc.aio.ServicerContext) -> res.Plan:
        """Returns a plan of the price list.

        Raises:
            NotFound: ``PLAN_NOT_FOUND``.
        """
        (plan_id,) = PLAN.parse(request.name, "name")
        row = await self._db.read(None, plan_store.get_plan, plan_id)
        if row is None:
            raise errors.plan_not_found(request.name)
        return plan_to_proto(row)

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPlansResponse:
        """Returns a page of the plans by ID (archived ones only with ``show_archived``)."""
        page = page_of(request.page_size, request.page_token, str(request.show_archived))
        listing = await self._db.read(None, plan_store.list_plans, page, request.show_archived)
        found, token = listing.messages(plan_to_proto)
        return pb.ListPlansResponse(plans=found, next_page_token=token)

    async def CreatePlan(self, request: pb.CreatePlanRequest, context: grpc.aio.ServicerContext) -> res.Plan:
        """Creates a plan of the price list; a retry with its ``request_id`` returns the first.

        Raises:
            InvalidArgument: A malformed ``plan_id``, or ``INVALID_PLAN``.
            AlreadyExists: ``PLAN_ALREADY_EXISTS``.
        """
        plan_id = validate_id(request.plan_id, "plan_id")
        now = self._clock()
        fields = _plan_fields(request.plan, PLAN_MUTABLE)
        row = _checked_plan(
            PlanRow(
                id=plan_id,
                currency_code=request.plan.currency_code,
                state=PlanState.ACTIVE,
                request_id=request.request_id or None,
                create_time=now,
                update_time=now,
                **fields,
            )
        )
        name = PLAN.format(plan_id)
        note_resource(name)
        made = await self._db.write(None, plan_store.add_plan, row)
        if made is None:
            raise errors.plan_exists(name)
        return plan_to_proto(made)

    async def UpdatePlan(self, request: pb.UpdatePlanRequest, context: grpc.aio.ServicerContext) -> res.Plan:
        """Updates the named mutable fields of a plan (AIP-134); its subscribers' limits change at once.

        Raises:
            InvalidArgument: A bad ``update_mask``, ``default`` set to false, or ``INVALID_PLAN``.
            NotFound: ``PLAN_NOT_FOUND``.
        """
        (plan_id,) = PLAN.parse(request.plan.name, "plan.name")
        if "currency_code" in request.update_mask.paths:
            raise invalid("update_mask", "currency_code cannot change; create another plan instead")
        paths = update_paths(request.update_mask, PLAN_MUTABLE, PLAN_IGNORED)
        if "default" in paths and not request.plan.default:
            raise invalid("plan.default", "a plan stops being the default when another is made the default")
        row = await self._db.write(None, _update_plan, plan_id, request.plan, paths, self._clock())
        if row is None:
            raise errors.plan_not_found(request.plan.name)
        return plan_to_proto(row)

    async def ArchivePlan(
        self, request: pb.ArchivePlanRequest, context: grpc.aio.ServicerContext
    ) -> res.Plan:
        """Archives a plan: its subscribers keep it, nobody new subscribes.

        Raises:
            NotFound: ``PLAN_NOT_FOUND``.
            FailedPrecondition: ``DEFAULT_PLAN``.
        """
        (plan_id,) = PLAN.parse(request.name, "name")
        try:
            row = await self._db.write(None, _archive_plan, plan_id, self._clock())
        except DefaultPlanArchived:
            raise errors.default_plan(request.name) from None
        if row is None:
            raise errors.plan_not_found(request.name)
        return plan_to_proto(row)

    # Subscriptions ------------------------------------------------------------------------------

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> res.Subscription:
        """Returns the tenant's subscription (the default plan's for a tenant that never changed it)."""
        (tenant_id,) = SUBSCRIPTION.parse(request.name, "name")
        tenant_id = validate_id(tenant_id, "name")
        _require_member(tenant_id)
        row = await self._db.read(tenant_id, plan_store.subscription_of)
        return subscription_to_proto(row, self._clock())

    async def UpdateSubscription(
        self, request: pb.UpdateSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> res.Subscription:
        """Changes the tenant's plan (prorated by the day) or cancel at period end; the operator anything.

        Raises:
            InvalidArgument: A bad ``update_mask`` or ``subscription.plan``.
            PermissionDenied: ``OPERATOR_ONLY_FIELD``.
            NotFound: ``PLAN_NOT_FOUND``.
            FailedPrecondition: ``PLAN_ARCHIVED`` or ``CURRENCY_MISMATCH``.
        """
        (tenant_id,) = SUBSCRIPTION.parse(request.subscription.name, "subscription.name")
        tenant_id = validate_id(tenant_id, "subscription.name")
        _require_member(tenant_id)
        operator_fields = sorted(set(request.update_mask.paths) & set(SUBSCRIPTION_OPERATOR_FIELDS))
        if operator_fields and not is_operator():
            raise errors.operator_only_field(operator_fields)
        mutable = SUBSCRIPTION_TENANT_FIELDS + (SUBSCRIPTION_OPERATOR_FIELDS if is_operator() else ())
        mask = request.update_mask if request.update_mask.paths != ["*"] else field_mask_pb2.FieldMask()
        paths = (
            update_paths(mask, mutable, SUBSCRIPTION_IGNORED) if mask.paths else SUBSCRIPTION_TENANT_FIELDS
        )
        now = self._clock()
        row = await self._db.write(tenant_id, _update_subscription, request.subscription, paths, now)
        return subscription_to_proto(row, now)

    # Invoices -----------------------------------------------------------------------------------

    async def PreviewInvoice(
        self, request: pb.PreviewInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> res.Invoice:
        """Returns the current period's invoice as if the period ended now (not stored, no number)."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        tenant_id = validate_id(tenant_id, "parent")
        _require_member(tenant_id)
        return invoice_to_proto(await self._db.read(tenant_id, _preview, self._clock()), preview=True)

    async def _invoice(self, name: str) -> InvoiceRow:
        tenant_id, invoice_id = INVOICE.parse(name, "name")
        _require_member(tenant_id)
        row = await self._db.read(tenant_id, plan_store.get_invoice, invoice_id)
        if row is None:
            raise errors.invoice_not_found(name)
        return row

    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> res.Invoice:
        """Returns an invoice of the tenant.

        Raises:
            NotFound: ``INVOICE_NOT_FOUND``.
        """
        return invoice_to_proto(await self._invoice(request.name))

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        """Returns a page of the tenant's invoices, the latest period first."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        _require_member(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, plan_store.list_invoices, page)
        found, token = listing.messages(invoice_to_proto)
        return pb.ListInvoicesResponse(invoices=found, next_page_token=token)

    async def GetInvoicePdf(
        self, request: pb.GetInvoicePdfRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        """Returns an invoice as a PDF document.

        Raises:
            NotFound: ``INVOICE_NOT_FOUND``.
        """
        row = await self._invoice(request.name)
        return httpbody_pb2.HttpBody(content_type="application/pdf", data=invoice_documents.pdf(row))

    async def ExportInvoices(
        self, request: pb.ExportInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        """Returns the line items of the tenant's invoices as CSV, the latest period first."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        _require_member(tenant_id)
        rows = await self._db.read(tenant_id, plan_store.all_invoices, MAX_EXPORTED_INVOICES)
        return httpbody_pb2.HttpBody(
            content_type="text/csv; charset=utf-8", data=invoice_documents.csv_of(rows)
        )

    async def FinalizeInvoice(
        self, request: pb.FinalizeInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> res.Invoice:
        """Finalizes a draft invoice: rated again, numbered gaplessly, immutable; idempotent.

        Raises:
            NotFound: ``INVOICE_NOT_FOUND``.
        """
        tenant_id, invoice_id = INVOICE.parse(request.name, "name")
        row = await self._db.write(tenant_id, plan_store.finalize_invoice, invoice_id, ISSUER, self._clock())
        if row is None:
            raise errors.invoice_not_found(request.name)
        return invoice_to_proto(row)

    async def _close(self, name: str, state: InvoiceState) -> res.Invoice:
        tenant_id, invoice_id = INVOICE.parse(name, "name")
        try:
            row = await self._db.write(tenant_id, plan_store.close_invoice, invoice_id, state, self._clock())
        except plan_store.InvoiceNotOpen as closed:
            raise errors.invoice_not_open(name, closed.state) from None
        if row is None:
            raise errors.invoice_not_found(name)
        return invoice_to_proto(row)

    async def MarkInvoicePaid(
        self, request: pb.MarkInvoicePaidRequest, context: grpc.aio.ServicerContext
    ) -> res.Invoice:
        """Marks a finalized invoice paid; idempotent.

        Raises:
            NotFound: ``INVOICE_NOT_FOUND``.
            FailedPrecondition: ``INVOICE_NOT_OPEN``.
        """
        return await self._close(request.name, InvoiceState.PAID)

    async def VoidInvoice(
        self, request: pb.VoidInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> res.Invoice:
        """Voids a finalized invoice (its number stays used); idempotent.

        Raises:
            NotFound: ``INVOICE_NOT_FOUND``.
            FailedPrecondition: ``INVOICE_NOT_OPEN``.
        """
        return await self._close(request.name, InvoiceState.VOID)

    async def close_periods(self) -> int:
        """Makes the draft invoice of the last period ended for every tenant without one (the sweep).

        Each tenant's draft is written in its own transaction (:func:`plan_store.draft_invoice`,
        idempotent), so replicas sweeping at once make one invoice each.

        Returns:
            How many tenants were swept.
        """
        now = self._clock()
        start, _ = period_of(period_of(now)[0] - dt.timedelta(seconds=1))
        tenants = await self._db.system(plan_store.tenants_to_invoice, start)
        for tenant_id in tenants:
            await self._db.write(tenant_id, plan_store.draft_invoice, start, now)
        return len(tenants)
