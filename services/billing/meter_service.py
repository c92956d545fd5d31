"""The meter RPCs of ``BillingService`` (AIP-131 to 135) and ``QueryUsage``: protos in and out.

A tenant's meters are rows; the built-in meters are every tenant's, answered from
:mod:`services.billing.meters` and never written. Queries add up the tenant's recorded
events (:func:`services.billing.store.query_usage`) in the windows of
:mod:`services.billing.windows`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2, field_mask_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import errors, meters, store, windows
from services.billing.models import Aggregation, MeterRow
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database, Tx
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument, invalid
from services.kit.fieldmask import update_paths
from services.kit.names import TENANT, ResourceName, validate_id
from services.kit.pagination import page_of
from services.kit.timestamps import from_timestamp, to_timestamp

METER = ResourceName.of(res.Meter)
AGGREGATIONS = EnumMap(Aggregation, res.Meter.Aggregation, "AGGREGATION_")
WINDOW_SIZES = EnumMap(windows.WindowSize, pb.QueryUsageRequest.WindowSize, "WINDOW_SIZE_")
MUTABLE_FIELDS = ("display_name", "description", "group_by", "late_event_grace", "unit")
IMMUTABLE_FIELDS = ("event_type", "aggregation", "value_property")
#: The fields a new meter takes from the request.
CREATE_FIELDS = (*MUTABLE_FIELDS, *IMMUTABLE_FIELDS)
# AIP-203: output-only and identifier fields named in an update mask are ignored.
IGNORED_FIELDS = frozenset({"name", "built_in", "create_time", "update_time"})
#: The most windows and groups one query returns (the contract's bound on the response).
MAX_QUERY_ROWS = 10_000


def meter_to_proto(row: MeterRow) -> res.Meter:
    """Maps a meter (a tenant's or built in) to its resource."""
    message = res.Meter(
        name=METER.format(row.tenant_id, row.id),
        display_name=row.display_name,
        description=row.description,
        event_type=row.event_type,
        aggregation=AGGREGATIONS.to_proto(row.aggregation),  # type: ignore[arg-type]
        value_property=row.value_property,
        group_by=row.group_by,
        unit=row.unit,
        built_in=row.built_in,
    )
    message.late_event_grace.FromSeconds(row.late_event_grace_seconds)
    if row.create_time is not None:
        message.create_time.CopyFrom(to_timestamp(row.create_time))
    if row.update_time is not None:
        message.update_time.CopyFrom(to_timestamp(row.update_time))
    return message


def _fields(message: res.Meter, paths: tuple[str, ...]) -> dict[str, Any]:
    """Returns the fields named in ``paths`` of a meter resource, as column values."""
    values: dict[str, Any] = {}
    for path in paths:
        if path == "late_event_grace":
            grace = message.late_event_grace.ToTimedelta() if message.HasField("late_event_grace") else None
            values["late_event_grace_seconds"] = int(
                (grace if grace is not None else meters.DEFAULT_LATE_EVENT_GRACE).total_seconds()
            )
        elif path == "aggregation":
            aggregation = AGGREGATIONS.from_proto(message.aggregation)
            values["aggregation"] = aggregation.value if aggregation is not None else ""
        elif path == "group_by":
            values["group_by"] = dict(message.group_by)
        else:
            values[path] = getattr(message, path)
    return values


def _checked(row: MeterRow, prefix: str = "meter") -> MeterRow:
    """Returns ``row`` when it is a valid definition.

    Raises:
        InvalidArgument: ``INVALID_METER`` with its violations.
    """
    found = meters.violations(row, prefix)
    if found:
        raise errors.invalid_meter(found)
    return row


def _update_paths(mask: field_mask_pb2.FieldMask) -> tuple[str, ...]:
    """Returns the mutable fields an update mask names (:func:`services.kit.fieldmask.update_paths`).

    Raises:
        InvalidArgument: A path is not a field of ``Meter``, or is immutable.
    """
    immutable = sorted(set(mask.paths) & set(IMMUTABLE_FIELDS))
    if immutable:
        raise invalid("update_mask", f"{immutable} cannot change; create another meter instead")
    return update_paths(mask, MUTABLE_FIELDS, IGNORED_FIELDS)


def _meter_name(name: str, field: str) -> tuple[str, str]:
    """Returns the tenant and meter IDs of a meter name; the caller must be of that tenant.

    Raises:
        InvalidArgument: ``name`` does not have the shape.
        PermissionDenied: ``TENANT_MISMATCH``.
    """
    tenant_id, meter_id = METER.parse(name, field)
    require_tenant(tenant_id)
    return tenant_id, meter_id


def _find(tx: Tx, meter_id: str) -> MeterRow | None:
    """Returns the tenant's meter of that ID, built in or its own, or None."""
    return meters.built_in(tx.tenant_id, meter_id) or store.get_meter(tx, meter_id)


def _update(
    tx: Tx, meter_id: str, message: res.Meter, paths: tuple[str, ...], now: dt.datetime
) -> MeterRow | None:
    """Reads the meter locked, applies the named fields, checks the result and writes it, in one transaction.

    Raises:
        InvalidArgument: ``INVALID_METER``: the result breaks the rules (nothing is written).
    """
    row = store.get_meter(tx, meter_id, lock=True)
    if row is None:
        return None
    changes = {**_fields(message, paths), "update_time": now}
    _checked(dataclasses.replace(row, **changes))
    return store.update_meter(tx, meter_id, changes)


def _unknown_keys(request: pb.QueryUsageRequest, meter: MeterRow) -> list[FieldViolation]:
    """Returns a violation per query key the meter does not have (``subject`` is only for grouping)."""
    found = []
    keys = {*meter.group_by, meters.SUBJECT_KEY}
    for i, key in enumerate(request.group_by):
        if key not in keys:
            found.append(
                FieldViolation(f"group_by[{i}]", f"{key!r} is not a key of the meter: {sorted(keys)}")
            )
    for key in sorted(request.filter_group_by):
        if key not in meter.group_by:
            found.append(
                FieldViolation(
                    f'filter_group_by["{key}"]',
                    f"{key!r} is not a key of the meter: {sorted(meter.group_by)}",
                )
            )
    return found


class MeterMethods:
    """The meter RPCs and ``QueryUsage`` of ``BillingService`` (mixed into its servicer).

    Args:
        db: The billing database.
        clock: The time meters are created and changed at.
    """

    def __init__(self, db: Database, clock: Callable[[], dt.datetime]) -> None:
        self._db = db
        self._clock = clock

    async def CreateMeter(
        self, request: pb.CreateMeterRequest, context: grpc.aio.ServicerContext
    ) -> res.Meter:
        """Creates one of the tenant's meters; a retry with its ``request_id`` returns the first.

        Raises:
            InvalidArgument: A malformed ``meter_id``, or ``INVALID_METER``.
            AlreadyExists: ``METER_ALREADY_EXISTS``.
        """
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        meter_id = validate_id(request.meter_id, "meter_id")
        now = self._clock()
        fields = _fields(request.meter, CREATE_FIELDS)
        row = _checked(
            MeterRow(
                tenant_id=tenant_id,
                id=meter_id,
                request_id=request.request_id or None,
                create_time=now,
                update_time=now,
                **fields,
            )
        )
        name = METER.format(tenant_id, meter_id)
        note_resource(name)
        made = await self._db.write(tenant_id, store.add_meter, row)
        if made is None:
            raise errors.meter_exists(name)
        return meter_to_proto(made)

    async def GetMeter(self, request: pb.GetMeterRequest, context: grpc.aio.ServicerContext) -> res.Meter:
        """Returns a meter of the tenant, built in or its own.

        Raises:
            NotFound: ``METER_NOT_FOUND``.
        """
        tenant_id, meter_id = _meter_name(request.name, "name")
        row = await self._db.read(tenant_id, _find, meter_id)
        if row is None:
            raise errors.meter_not_found(request.name)
        return meter_to_proto(row)

    async def ListMeters(
        self, request: pb.ListMetersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMetersResponse:
        """Returns a page of the tenant's meters: the built-in ones, then its own, by ID."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_meters, page)
        found, token = listing.messages(meter_to_proto)
        return pb.ListMetersResponse(meters=found, next_page_token=token)

    async def UpdateMeter(
        self, request: pb.UpdateMeterRequest, context: grpc.aio.ServicerContext
    ) -> res.Meter:
        """Updates the mutable fields of a tenant's meter named in ``update_mask`` (AIP-134).

        Raises:
            InvalidArgument: A bad ``update_mask``, or ``INVALID_METER``.
            NotFound: ``METER_NOT_FOUND``.
            FailedPrecondition: ``BUILT_IN_METER``.
        """
        tenant_id, meter_id = _meter_name(request.meter.name, "meter.name")
        if meters.built_in(tenant_id, meter_id) is not None:
            raise errors.built_in_meter(request.meter.name)
        paths = _update_paths(request.update_mask)
        row = await self._db.write(tenant_id, _update, meter_id, request.meter, paths, self._clock())
        if row is None:
            raise errors.meter_not_found(request.meter.name)
        return meter_to_proto(row)

    async def DeleteMeter(
        self, request: pb.DeleteMeterRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        """Deletes a tenant's meter; its events stay recorded.

        Raises:
            NotFound: ``METER_NOT_FOUND``.
            FailedPrecondition: ``BUILT_IN_METER``.
        """
        tenant_id, meter_id = _meter_name(request.name, "name")
        if meters.built_in(tenant_id, meter_id) is not None:
            raise errors.built_in_meter(request.name)
        if not await self._db.write(tenant_id, store.delete_meter, meter_id):
            raise errors.meter_not_found(request.name)
        return empty_pb2.Empty()

    async def QueryUsage(
        self, request: pb.QueryUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueryUsageResponse:
        """Returns the meter's value per window and group over the range, from the tenant's events only.

        Raises:
            InvalidArgument: A bad range, window alignment, time zone or key; or
                ``QUERY_TOO_LARGE``.
            NotFound: ``METER_NOT_FOUND``.
        """
        tenant_id, meter_id = _meter_name(request.name, "name")
        zone = windows.zone_of(request.time_zone)
        bounds = windows.windows(
            from_timestamp(request.start_time),
            from_timestamp(request.end_time),
            WINDOW_SIZES.from_proto(request.window_size),
            zone,
        )
        meter = await self._db.read(tenant_id, _find, meter_id)
        if meter is None:
            raise errors.meter_not_found(request.name)
        bad = _unknown_keys(request, meter)
        if bad:
            raise InvalidArgument(bad)
        query = store.UsageQuery(
            meter,
            bounds,
            list(request.group_by),
            list(request.subjects),
            dict(request.filter_group_by),
            MAX_QUERY_ROWS,
        )
        try:
            found = await self._db.read(tenant_id, store.query_usage, query)
        except store.QueryTooLarge:
            raise errors.query_too_large(MAX_QUERY_ROWS) from None
        answer = pb.QueryUsageResponse()
        for usage in found:
            start, end = bounds[usage.window]
            answer.windows.add(
                start_time=to_timestamp(start),
                end_time=to_timestamp(end),
                value=usage.value,
                subject=usage.subject,
                group_by=usage.groups,
            )
        return answer
