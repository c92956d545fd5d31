"""BillingService: protos in, domain calls, protos out."""

from __future__ import annotations

import math

import grpc

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import errors, store
from services.billing.models import UsageEvent
from services.billing.plans import METERS, period_of, plan_of
from services.kit.auth import require_tenant
from services.kit.db import Database, write_per_tenant
from services.kit.errors import FieldViolation, InvalidArgument, invalid
from services.kit.names import parse, validate_id
from services.kit.timestamps import from_timestamp, to_timestamp, utcnow

MAX_EVENTS = 1000
MAX_KEY_LENGTH = 255
MAX_SUBJECT_LENGTH = 1024


def _tenant_id(name: str, field: str) -> str:
    """Return the tenant ID of a ``tenants/{tenant}`` name.

    Raises:
        InvalidArgument: ``name`` is not a tenant name.
    """
    (tenant_id,) = parse(name, field, "tenants")
    return validate_id(tenant_id, field)


def _summary_tenant_id(name: str) -> str:
    """Return the tenant ID of a ``tenants/{tenant}/usageSummary`` name (a singleton, AIP-156).

    Raises:
        InvalidArgument: ``name`` does not have that shape.
    """
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "tenants" or parts[2] != "usageSummary" or not parts[1]:
        raise invalid("name", "must be a resource name of the form tenants/{tenant}/usageSummary")
    return validate_id(parts[1], "name")


def _event_violations(index: int, event: res.UsageEvent) -> list[FieldViolation]:
    """Return what is wrong with the ``index``-th event of a batch (CloudEvents 1.0 attributes)."""
    prefix = f"events[{index}]"
    found = [
        FieldViolation(f"{prefix}.{field}", f"is required, at most {MAX_KEY_LENGTH} characters")
        for field, value in (("id", event.id), ("source", event.source))
        if not value or len(value) > MAX_KEY_LENGTH
    ]
    try:
        _tenant_id(event.tenant, f"{prefix}.tenant")
    except InvalidArgument as error:
        found.extend(error.violations)
    if event.meter not in METERS:
        found.append(errors.unknown_meter_violation(f"{prefix}.meter", event.meter))
    if not math.isfinite(event.quantity) or event.quantity < 0:
        found.append(FieldViolation(f"{prefix}.quantity", "must be a finite number, not negative"))
    if len(event.subject) > MAX_SUBJECT_LENGTH:
        found.append(FieldViolation(f"{prefix}.subject", f"must be at most {MAX_SUBJECT_LENGTH} characters"))
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
        if not 1 <= len(request.events) <= MAX_EVENTS:
            raise invalid("events", f"must hold 1-{MAX_EVENTS} events")
        violations = [v for i, event in enumerate(request.events) for v in _event_violations(i, event)]
        if violations:
            raise errors.invalid_usage_events(violations)
        now = utcnow()
        rows = [
            UsageEvent(
                source=event.source,
                event_id=event.id,
                tenant_id=event.tenant.removeprefix("tenants/"),
                meter=event.meter,
                quantity=event.quantity,
                subject=event.subject,
                time=from_timestamp(event.time) if event.HasField("time") else now,
                ingest_time=now,
            )
            for event in request.events
        ]
        # An internal RPC: the caller is a service scoped to no tenant, and a batch may hold
        # several tenants' events.
        async with self._db.transaction() as session:
            accepted = await write_per_tenant(
                session, rows, lambda row: row.tenant_id, lambda part: store.add_usage_events(session, part)
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
        async with self._db.transaction(tenant=tenant_id) as session:
            usage = await store.usage_by_meter(session, tenant_id, plan.limits.keys(), start, end)
        meters = []
        for meter in sorted(plan.limits):
            quantity, count = usage.get(meter, (0.0, 0))
            meters.append(
                res.MeterUsage(
                    meter=meter,
                    unit=METERS[meter].unit,
                    quantity=quantity,
                    event_count=count,
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
        """Say whether the tenant may use ``quantity`` more of a meter in the current period.

        ``allowed`` is ``used + quantity <= limit`` (always true when the limit is 0, unlimited);
        ``remaining`` is ``max(limit - used, 0)``.
        """
        tenant_id = _tenant_id(request.tenant, "tenant")
        if request.meter not in METERS:
            raise errors.unknown_meter("meter", request.meter)
        if not math.isfinite(request.quantity) or request.quantity < 0:
            raise invalid("quantity", "must be a finite number, not negative")
        limit = plan_of(tenant_id).limits.get(request.meter, 0)
        start, end = period_of(utcnow())
        # An internal RPC (the agent service, scoped to no tenant) that names the tenant.
        async with self._db.transaction(tenant=tenant_id) as session:
            usage = await store.usage_by_meter(session, tenant_id, [request.meter], start, end)
        used, _ = usage.get(request.meter, (0.0, 0))
        return pb.CheckEntitlementResponse(
            allowed=limit == 0 or used + request.quantity <= limit,
            remaining=max(limit - used, 0),
            limit=limit,
        )
