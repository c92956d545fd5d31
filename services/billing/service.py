"""BillingService: protos in, domain calls, protos out."""

from __future__ import annotations

import math

import grpc

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import errors, store
from services.billing.plans import METERS, period_of, plan_of
from services.kit.auth import require_tenant
from services.kit.db import Database, write_per_tenant
from services.kit.errors import FieldViolation, InvalidArgument, invalid
from services.kit.names import TENANT, ResourceName, validate_id
from services.kit.timestamps import from_timestamp, to_timestamp, utcnow

USAGE_SUMMARY = ResourceName.of(res.UsageSummary)


def _tenant_id(name: str, field: str) -> str:
    """Return the tenant ID of a ``tenants/{tenant}`` name.

    Raises:
        InvalidArgument: ``name`` is not a tenant name.
    """
    (tenant_id,) = TENANT.parse(name, field)
    return validate_id(tenant_id, field)


def _summary_tenant_id(name: str) -> str:
    """Return the tenant ID of a ``tenants/{tenant}/usageSummary`` name (a singleton, AIP-156).

    Raises:
        InvalidArgument: ``name`` does not have that shape.
    """
    (tenant_id,) = USAGE_SUMMARY.parse(name, "name")
    return validate_id(tenant_id, "name")


def _event_violations(index: int, event: res.UsageEvent, valid_tenants: set[str]) -> list[FieldViolation]:
    """Return what is wrong with the ``index``-th event of a batch (CloudEvents 1.0 attributes).

    ``valid_tenants`` holds the tenant names found valid so far in the batch (a batch is
    mostly one tenant's); a valid one is added.
    """
    prefix = f"events[{index}]"
    found = [  # their lengths are the contract's rules, checked by the guard
        FieldViolation(f"{prefix}.{field}", "is required")
        for field, value in (("id", event.id), ("source", event.source))
        if not value
    ]
    if event.tenant not in valid_tenants:
        try:
            _tenant_id(event.tenant, f"{prefix}.tenant")
            valid_tenants.add(event.tenant)
        except InvalidArgument as error:
            found.extend(error.violations)
    if event.meter not in METERS:
        found.append(errors.unknown_meter_violation(f"{prefix}.meter", event.meter))
    if not math.isfinite(event.quantity) or event.quantity < 0:
        found.append(FieldViolation(f"{prefix}.quantity", "must be a finite number, not negative"))
    return found


class BillingService(pb_grpc.BillingServiceServicer):
    """Usage metering and plan entitlements.

    Args:
        db: The billing database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def IngestUsageEvents(
        self, request: pb.IngestUsageEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestUsageEventsResponse:
        """Record a batch of usage events, all or nothing; events seen before count as duplicates."""
        tenants: set[str] = set()
        violations = [
            v for i, event in enumerate(request.events) for v in _event_violations(i, event, tenants)
        ]
        if violations:
            raise errors.invalid_usage_events(violations)
        now = utcnow()
        rows = [
            {
                "tenant_id": event.tenant.removeprefix("tenants/"),
                "source": event.source,
                "event_id": event.id,
                "meter": event.meter,
                "quantity": event.quantity,
                "subject": event.subject,
                "time": from_timestamp(event.time) if event.HasField("time") else now,
                "ingest_time": now,
            }
            for event in request.events
        ]
        # An internal RPC: the caller is a service bound to no tenant, and a batch may hold
        # several tenants' events; each tenant's part is written bound to it.
        accepted = await self._db.write(
            None, write_per_tenant, rows, lambda row: row["tenant_id"], store.add_usage_events
        )
        return pb.IngestUsageEventsResponse(accepted_count=accepted, duplicate_count=len(rows) - accepted)

    async def GetUsageSummary(
        self, request: pb.GetUsageSummaryRequest, context: grpc.aio.ServicerContext
    ) -> res.UsageSummary:
        """Return the tenant's usage per meter of its plan for the calendar month (UTC) of ``period_time``."""
        tenant_id = _summary_tenant_id(request.name)
        require_tenant(tenant_id)
        instant = from_timestamp(request.period_time) if request.HasField("period_time") else utcnow()
        start, end = period_of(instant)
        plan = plan_of(tenant_id)
        usage = await self._db.read(tenant_id, store.usage_totals, plan.limits.keys(), start)
        meters = []
        for meter in sorted(plan.limits):
            total = usage.get(meter)
            meters.append(
                res.MeterUsage(
                    meter=meter,
                    unit=METERS[meter].unit,
                    quantity=total.quantity if total else 0.0,
                    event_count=total.event_count if total else 0,
                    limit=plan.limits[meter],
                )
            )
        return res.UsageSummary(
            name=request.name,
            plan=plan.name,
            start_time=to_timestamp(start),
            end_time=to_timestamp(end),
            meters=meters,
        )

    async def CheckEntitlement(
        self, request: pb.CheckEntitlementRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckEntitlementResponse:
        """Say whether the tenant may use each quantity more of its meter in the current period.

        Per meter, ``allowed`` is ``used + quantity <= limit`` (always true when the limit is
        0, unlimited) and ``remaining`` is ``max(limit - used, 0)``; the answer is allowed
        when every meter is. One read of the period's running totals answers all meters.
        """
        tenant_id = _tenant_id(request.tenant, "tenant")
        asked = _asked_quantities(request)
        limits = plan_of(tenant_id).limits
        start, _ = period_of(utcnow())
        # An internal RPC (the agent service, bound to no tenant) that names the tenant.
        usage = await self._db.read(tenant_id, store.usage_totals, [meter for meter, _ in asked], start)
        meters = []
        for meter, quantity in asked:
            limit = limits.get(meter, 0)
            used = usage[meter].quantity if meter in usage else 0.0
            meters.append(
                pb.MeterEntitlement(
                    meter=meter,
                    allowed=limit == 0 or used + quantity <= limit,
                    remaining=max(limit - used, 0),
                    limit=limit,
                )
            )
        answer = pb.CheckEntitlementResponse(allowed=all(m.allowed for m in meters), meters=meters)
        if request.meter:
            answer.remaining, answer.limit = meters[0].remaining, meters[0].limit
        return answer


def _asked_quantities(request: pb.CheckEntitlementRequest) -> list[tuple[str, float]]:
    """Returns ``(meter, quantity)`` pairs of a ``CheckEntitlement`` request, validated.

    Raises:
        InvalidArgument: Neither or both of ``meter`` and ``quantities``, an unknown or
            repeated meter, or a negative or non-finite quantity.
    """
    if bool(request.meter) == bool(request.quantities):
        raise invalid("quantities", "set either meter (with quantity) or quantities")
    if request.meter:
        pairs, fields = [(request.meter, request.quantity)], [("meter", "quantity")]
    else:
        pairs = [(q.meter, q.quantity) for q in request.quantities]
        fields = [(f"quantities[{i}].meter", f"quantities[{i}].quantity") for i in range(len(pairs))]
    violations = []
    unknown = False
    seen: set[str] = set()
    for (meter, quantity), (meter_field, quantity_field) in zip(pairs, fields, strict=True):
        if meter not in METERS:
            unknown = True
            violations.append(errors.unknown_meter_violation(meter_field, meter))
        elif meter in seen:
            violations.append(FieldViolation(meter_field, f"names {meter!r} twice"))
        seen.add(meter)
        if not math.isfinite(quantity) or quantity < 0:
            violations.append(FieldViolation(quantity_field, "must be a finite number, not negative"))
    if violations:
        raise InvalidArgument(violations, reason="UNKNOWN_METER" if unknown else "INVALID_ARGUMENT")
    return pairs
