"""BillingService: protos in, domain calls, protos out."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping

import grpc
from google.protobuf.duration_pb2 import Duration

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import cloudevents, errors, plan_store, store
from services.billing.alert_service import AlertMethods, AlertSweeper
from services.billing.meter_service import MeterMethods
from services.billing.models import (
    EventRow,
    MeterTotal,
    PlanRow,
    ReservationRecord,
    ReservationRow,
    ReservationState,
)
from services.billing.plan_service import PlanMethods
from services.billing.plans import METERS, period_of
from services.kit.auth import require_tenant
from services.kit.db import Database, Tx, write_per_tenant
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument, invalid
from services.kit.names import TENANT, ResourceName, validate_id
from services.kit.timestamps import from_timestamp, to_timestamp, utcnow

USAGE_SUMMARY = ResourceName.of(res.UsageSummary)
RESERVATION = ResourceName.of(res.Reservation)
RESERVATION_STATES = EnumMap(ReservationState, res.Reservation.State, "STATE_")
#: How long a reservation holds its quantities when the request sets no ``ttl``.
DEFAULT_RESERVATION_TTL = dt.timedelta(minutes=10)


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


def _reservation_name(name: str) -> tuple[str, str]:
    """Returns the tenant and reservation IDs of a ``tenants/{tenant}/reservations/{reservation}`` name.

    Raises:
        InvalidArgument: ``name`` does not have that shape, or an ID is malformed.
    """
    tenant_id, reservation_id = RESERVATION.parse(name, "name")
    return validate_id(tenant_id, "name"), validate_id(reservation_id, "name")


def _meter_quantities(quantities: Mapping[str, float], field: str) -> dict[str, float]:
    """Returns a map of meter to quantity from a request, validated.

    Args:
        quantities: The request's map.
        field: Its path in the request, for field violations (``quantities["gpu_hours"]``).

    Raises:
        InvalidArgument: Reason ``UNKNOWN_METER`` for a meter that is unknown (with any
            other violations), else ``INVALID_ARGUMENT`` for a negative or non-finite quantity.
    """
    violations = []
    unknown = False
    for meter, quantity in sorted(quantities.items()):
        path = f'{field}["{meter}"]'
        if meter not in METERS:
            unknown = True
            violations.append(errors.unknown_meter_violation(path, meter))
        if not math.isfinite(quantity) or quantity < 0:
            violations.append(FieldViolation(path, "must be a finite number, not negative"))
    if violations:
        raise InvalidArgument(violations, reason="UNKNOWN_METER" if unknown else "INVALID_ARGUMENT")
    return dict(quantities)


def reservation_to_proto(record: ReservationRecord, now: dt.datetime) -> res.Reservation:
    """Returns the wire form of a reservation as it stands at ``now`` (``STATE_EXPIRED`` once it expired)."""
    row = record.row
    return res.Reservation(
        name=RESERVATION.format(row.tenant_id, row.id),
        quantities=record.quantities,
        state=RESERVATION_STATES.to_proto(row.state_at(now)),  # type: ignore[arg-type]
        expire_time=to_timestamp(row.expire_time),
        subject=row.subject,
        settled_quantities=row.settled_quantities or {},
        create_time=to_timestamp(row.create_time),
        end_time=to_timestamp(row.end_time),
    )


def _ttl(request: pb.CreateReservationRequest) -> dt.timedelta:
    """Returns the reservation's ttl, :data:`DEFAULT_RESERVATION_TTL` when unset (bounds: the contract's)."""
    if not request.reservation.HasField("ttl"):
        return DEFAULT_RESERVATION_TTL
    ttl: Duration = request.reservation.ttl
    return ttl.ToTimedelta()


class BillingService(MeterMethods, AlertMethods, PlanMethods, pb_grpc.BillingServiceServicer):
    """Usage metering, meters and their queries, usage alerts, plans, subscriptions, invoices, reservations.

    Args:
        db: The billing database.
        clock: The time reservations are made, expire and end in (tests move it).
        sweeper: Fires usage alerts; woken after usage is recorded. None: one on ``clock``.
    """

    def __init__(
        self, db: Database, clock: Callable[[], dt.datetime] = utcnow, sweeper: AlertSweeper | None = None
    ) -> None:
        MeterMethods.__init__(self, db, clock)
        AlertMethods.__init__(self, db, clock, sweeper or AlertSweeper(db, clock))
        PlanMethods.__init__(self, db, clock)

    async def IngestUsageEvents(
        self, request: pb.IngestUsageEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestUsageEventsResponse:
        """Records a batch of usage events of any tenants, all or nothing; events seen before are duplicates.

        Raises:
            InvalidArgument: ``INVALID_USAGE_EVENTS``, a violation per bad attribute
                (:func:`services.billing.cloudevents.from_messages`); nothing is recorded.
        """
        rows = cloudevents.from_messages(request.events, self._clock())
        # An internal RPC: the caller is a service bound to no tenant, and a batch may hold
        # several tenants' events; each tenant's part is written bound to it.
        accepted = await self._db.write(
            None, write_per_tenant, rows, lambda row: row["tenant_id"], store.add_usage_events
        )
        if accepted:
            self.alerts.poke()
        return pb.IngestUsageEventsResponse(accepted_count=accepted, duplicate_count=len(rows) - accepted)

    async def IngestCloudEvents(
        self, request: pb.IngestCloudEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestUsageEventsResponse:
        """Records the CloudEvents of an HTTP request (structured or batched mode) of the tenant, all or none.

        Raises:
            InvalidArgument: ``UNSUPPORTED_CONTENT_TYPE`` or ``INVALID_USAGE_EVENTS``
                (:func:`services.billing.cloudevents.from_http`); nothing is recorded.
        """
        tenant_id = _tenant_id(request.parent, "parent")
        require_tenant(tenant_id)
        rows = cloudevents.from_http(request.body, tenant_id, self._clock())
        accepted = await self._db.write(tenant_id, store.add_usage_events, rows)
        if accepted:
            self.alerts.poke()
        return pb.IngestUsageEventsResponse(accepted_count=accepted, duplicate_count=len(rows) - accepted)

    async def GetUsageSummary(
        self, request: pb.GetUsageSummaryRequest, context: grpc.aio.ServicerContext
    ) -> res.UsageSummary:
        """Return the tenant's usage per meter of its plan for the calendar month (UTC) of ``period_time``."""
        tenant_id = _summary_tenant_id(request.name)
        require_tenant(tenant_id)
        instant = from_timestamp(request.period_time) if request.HasField("period_time") else utcnow()
        start, end = period_of(instant)
        plan, usage = await self._db.read(tenant_id, _plan_and_usage, start)
        limits = {c["meter"]: c["hard_limit"] for c in plan.charges if c["meter"] in METERS}
        meters = []
        for meter in sorted(limits):
            total = usage.get(meter)
            meters.append(
                res.MeterUsage(
                    meter=meter,
                    unit=METERS[meter].unit,
                    quantity=total.quantity if total else 0.0,
                    event_count=total.event_count if total else 0,
                    limit=limits[meter],
                )
            )
        return res.UsageSummary(
            name=request.name,
            plan=plan.id,
            start_time=to_timestamp(start),
            end_time=to_timestamp(end),
            meters=meters,
        )

    async def CheckEntitlement(
        self, request: pb.CheckEntitlementRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckEntitlementResponse:
        """Say whether the tenant may use each quantity more of its meter in the current period.

        Per meter, ``allowed`` is ``used + quantity <= limit`` (always true when the limit is
        0, unlimited) and ``remaining`` is ``max(limit - used, 0)``, where ``used`` is the
        period's usage plus what the tenant's active, unexpired reservations hold; the
        answer is allowed when every meter is. One statement reads the period's running
        totals and the reservations' holds of all meters.
        """
        tenant_id = _tenant_id(request.tenant, "tenant")
        asked = _asked_quantities(request)
        now = self._clock()
        start, _ = period_of(now)
        # An internal RPC (the agent service, bound to no tenant) that names the tenant.
        plan, usage, held = await self._db.read(
            tenant_id, plan_store.entitlement_inputs, [meter for meter, _ in asked], start, now
        )
        limits = plan_store.hard_limits(plan)
        meters = []
        for meter, quantity in asked:
            limit = limits.get(meter, 0)
            used = usage.get(meter, 0.0) + held.get(meter, 0.0)
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

    async def CreateReservation(
        self, request: pb.CreateReservationRequest, context: grpc.aio.ServicerContext
    ) -> res.Reservation:
        """Holds quantities of the tenant's meters, all or nothing, if they fit in the plan's limits.

        The rule (the contract's): for each meter asked for with a limit above 0 in the
        tenant's plan, ``used + held + requested <= limit`` for the current period, where
        ``held`` counts the tenant's active reservations unexpired now; decided under the
        tenant's lock (:func:`services.billing.store.reserve`). A retry with the same
        ``reservation_id`` returns the first call's reservation.

        Raises:
            InvalidArgument: A malformed ``parent`` or ``reservation_id``, an unknown meter
                (``UNKNOWN_METER``), a negative or non-finite quantity.
            QuotaExceeded: ``QUOTA_EXCEEDED``, a ``QuotaFailure`` violation per meter short.
            AlreadyExists: ``RESERVATION_ALREADY_EXISTS``, the ID holds other quantities.
        """
        tenant_id = _tenant_id(request.parent, "parent")
        reservation_id = validate_id(request.reservation_id, "reservation_id")
        quantities = _meter_quantities(request.reservation.quantities, "reservation.quantities")
        now = self._clock()
        record = ReservationRecord(
            ReservationRow(
                tenant_id=tenant_id,
                id=reservation_id,
                state=ReservationState.ACTIVE,
                subject=request.reservation.subject,
                create_time=now,
                expire_time=now + _ttl(request),
                end_time=None,
                settled_quantities=None,
            ),
            quantities,
        )
        start, _ = period_of(now)
        try:
            _, made = await self._db.write(tenant_id, plan_store.reserve_on_plan, record, start)
        except plan_store.PlanShortfall as short:
            raise errors.quota_exceeded(request.parent, short.plan_id, short.shortfalls) from None
        if made is not record and (made.quantities != quantities or made.row.subject != record.row.subject):
            raise errors.reservation_exists(RESERVATION.format(tenant_id, reservation_id))
        return reservation_to_proto(made, now)

    async def SettleReservation(
        self, request: pb.SettleReservationRequest, context: grpc.aio.ServicerContext
    ) -> res.Reservation:
        """Records the reservation's actual usage and closes it as settled, in one transaction, once.

        The usage is recorded as given, also above what was reserved: the work was done,
        and billing less than was used would hide it; a caller keeps a hard limit exact
        by reserving its worst case. The usage is either ``quantities`` (recorded as
        events of the reservation) or the caller's own ``usage_events``, recorded as
        ``IngestUsageEvents`` records them (deduplicated by source and id). See
        :func:`services.billing.store.settle`.

        Raises:
            InvalidArgument: A malformed ``name``, an unknown meter (``UNKNOWN_METER``), a
                negative or non-finite quantity, both ``quantities`` and ``usage_events``;
                ``INVALID_USAGE_EVENTS`` for an event that is invalid or of another tenant.
            NotFound: ``RESERVATION_NOT_FOUND``.
            FailedPrecondition: ``RESERVATION_RELEASED``; nothing was recorded.
        """
        tenant_id, reservation_id = _reservation_name(request.name)
        usage = _meter_quantities(request.quantities, "quantities")
        now = self._clock()
        events = None
        if request.usage_events:
            if usage:
                raise invalid("usage_events", "set either quantities or usage_events")
            events = _settled_events(request, tenant_id, now)
        try:
            settled = await self._db.write(tenant_id, store.settle, reservation_id, usage, now, events)
        except store.ReservationClosed:
            raise errors.reservation_released(request.name) from None
        if settled is None:
            raise errors.reservation_not_found(request.name)
        self.alerts.poke()
        return reservation_to_proto(settled, now)

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: grpc.aio.ServicerContext
    ) -> res.Reservation:
        """Frees the reservation's quantities without usage; releasing again returns it as it is.

        Raises:
            InvalidArgument: A malformed ``name``.
            NotFound: ``RESERVATION_NOT_FOUND``.
            FailedPrecondition: ``RESERVATION_SETTLED``; its usage stays recorded.
        """
        tenant_id, reservation_id = _reservation_name(request.name)
        now = self._clock()
        try:
            released = await self._db.write(tenant_id, store.release, reservation_id, now)
        except store.ReservationClosed:
            raise errors.reservation_settled(request.name) from None
        if released is None:
            raise errors.reservation_not_found(request.name)
        return reservation_to_proto(released, now)


def _settled_events(request: pb.SettleReservationRequest, tenant_id: str, now: dt.datetime) -> list[EventRow]:
    """Returns the ``usage_events`` of a settlement, validated as ``IngestUsageEvents`` validates them.

    Raises:
        InvalidArgument: ``INVALID_USAGE_EVENTS``: violations named ``usage_events[{i}]...``,
            also for an event of a tenant other than the reservation's.
    """
    try:
        events = cloudevents.from_messages(request.usage_events, now)
    except InvalidArgument as error:
        raise errors.invalid_usage_events(
            [FieldViolation("usage_" + v.field, v.description) for v in error.violations]
        ) from None
    tenant = TENANT.format(tenant_id)
    others = [
        FieldViolation(f"usage_events[{i}].tenant", f"must be the reservation's tenant, {tenant}")
        for i, row in enumerate(events)
        if row["tenant_id"] != tenant_id
    ]
    if others:
        raise errors.invalid_usage_events(others)
    return events


def _plan_and_usage(tx: Tx, start: dt.datetime) -> tuple[PlanRow, dict[str, MeterTotal]]:
    """Returns the tenant's plan in effect and its usage of the plan's meters in the period from ``start``."""
    plan = plan_store.tenant_plan(tx)
    return plan, store.usage_totals(tx, [c["meter"] for c in plan.charges], start)


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
