"""The usage alert RPCs of ``BillingService`` (AIP-131 to 135), and the sweep that fires alerts.

Alerts are rows of :mod:`services.billing.alerts`; a firing is found by
:class:`AlertSweeper` on every replica: after every ingestion or settlement that
recorded usage (woken by :meth:`AlertSweeper.poke`) and every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

import grpc
from google.protobuf import empty_pb2

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import alerts, errors, plan_store
from services.billing.models import Threshold, ThresholdType, UsageAlertEventRow, UsageAlertRow
from services.billing.plans import METERS
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database, Tx
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.names import TENANT, ResourceName, validate_id
from services.kit.pagination import page_of
from services.kit.timestamps import to_timestamp

#: A notification channel of the agent service, which sends the firings.
NOTIFICATION_CHANNEL = ResourceName("tenants/{tenant}/notificationChannels/{notification_channel}")

log = logging.getLogger(__name__)

USAGE_ALERT = ResourceName.of(res.UsageAlert)
THRESHOLD_TYPES = EnumMap(ThresholdType, res.UsageAlert.Threshold.Type, "TYPE_")
#: Seconds between two sweeps for alerts to fire, besides those after each ingestion.
ALERT_SWEEP_SECONDS = 5.0


def _threshold_to_proto(kind: str, value: float) -> res.UsageAlert.Threshold:
    return res.UsageAlert.Threshold(type=THRESHOLD_TYPES.to_proto(kind), value=value)  # type: ignore[arg-type]


def alert_to_proto(row: UsageAlertRow) -> res.UsageAlert:
    """Maps a usage alert to its resource."""
    return res.UsageAlert(
        name=alerts.alert_name(row.tenant_id, row.id),
        display_name=row.display_name,
        meter=row.meter,
        thresholds=[_threshold_to_proto(t["type"], t["value"]) for t in row.thresholds],
        create_time=to_timestamp(row.create_time),
        notification_channels=row.notification_channels,
    )


def event_to_proto(row: UsageAlertEventRow) -> res.UsageAlertEvent:
    """Maps a firing of a usage alert to its resource."""
    return res.UsageAlertEvent(
        name=f"{alerts.alert_name(row.tenant_id, row.alert_id)}/events/{row.id}",
        threshold=_threshold_to_proto(row.threshold_type, row.threshold_value),
        meter=row.meter,
        period_start_time=to_timestamp(row.period_start),
        period_end_time=to_timestamp(row.period_end),
        quantity=row.quantity,
        threshold_quantity=row.threshold_quantity,
        limit=row.limit,
        create_time=to_timestamp(row.create_time),
    )


def _thresholds(alert: res.UsageAlert) -> list[Threshold]:
    """Returns an alert's thresholds, validated (the contract bounds each type and value).

    Raises:
        InvalidArgument: ``UNKNOWN_METER`` for a meter that is no built-in one; else a
            threshold that is repeated or without a type.
    """
    if alert.meter not in METERS:
        raise InvalidArgument(
            [errors.unknown_meter_violation("usage_alert.meter", alert.meter)], reason="UNKNOWN_METER"
        )
    found: list[Threshold] = []
    violations = []
    for i, threshold in enumerate(alert.thresholds):
        kind = THRESHOLD_TYPES.from_proto(threshold.type)
        if kind is None:
            violations.append(FieldViolation(f"usage_alert.thresholds[{i}].type", "is required"))
            continue
        item = Threshold(type=kind.value, value=float(threshold.value))
        if item in found:
            violations.append(FieldViolation(f"usage_alert.thresholds[{i}]", "repeats an earlier threshold"))
        found.append(item)
    if not alert.thresholds:
        violations.append(FieldViolation("usage_alert.thresholds", "needs 1-10 thresholds"))
    if violations:
        raise InvalidArgument(violations)
    return found


def _channels(alert: res.UsageAlert, tenant_id: str) -> list[str]:
    """Returns an alert's notification channels, each one of the tenant's, named once.

    Raises:
        InvalidArgument: A name not of ``tenants/{tenant}/notificationChannels/{id}`` of the
            alert's tenant, or one named twice. Whether the channel exists is the agent
            service's to say when a firing is sent (a missing one fails that delivery).
    """
    violations = []
    for i, name in enumerate(alert.notification_channels):
        field = f"usage_alert.notification_channels[{i}]"
        try:
            (owner, _) = NOTIFICATION_CHANNEL.parse(name, field)
        except InvalidArgument as error:
            violations += error.violations
            continue
        if owner != tenant_id:
            violations.append(FieldViolation(field, f"must be a channel of tenants/{tenant_id}"))
        elif name in alert.notification_channels[:i]:
            violations.append(FieldViolation(field, "repeats an earlier channel"))
    if violations:
        raise InvalidArgument(violations)
    return list(alert.notification_channels)


def _alert_name(name: str, field: str) -> tuple[str, str]:
    """Returns the tenant and alert IDs of an alert's name; the caller must be of that tenant."""
    tenant_id, alert_id = USAGE_ALERT.parse(name, field)
    require_tenant(tenant_id)
    return tenant_id, alert_id


class AlertSweeper:
    """Fires usage alerts whose thresholds the current period's usage reached, on this replica.

    Every replica sweeps; the firings' unique key makes each happen once.

    Args:
        db: The billing database.
        clock: The time whose billing period is looked at.
        interval: Seconds between sweeps when nothing pokes it.
    """

    def __init__(
        self, db: Database, clock: Callable[[], dt.datetime], interval: float = ALERT_SWEEP_SECONDS
    ) -> None:
        self._db = db
        self._clock = clock
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> list[UsageAlertEventRow]:
        """Fires what is due now (:func:`services.billing.alerts.fire_crossed`); returns the new firings."""
        return await self._db.system(alerts.fire_crossed, self._clock(), _limits_of)

    def poke(self) -> None:
        """Asks for a sweep soon (after usage was recorded)."""
        self._wake.set()

    async def start(self) -> None:
        """Sweeps in the background."""
        self._task = asyncio.create_task(self._loop(), name="billing-alert-sweep")

    async def stop(self) -> None:
        """Stops sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                fired = await self.sweep()
            except Exception:  # the next sweep tries again
                log.exception("sweeping usage alerts failed")
                continue
            if fired:
                log.info("%d usage alert thresholds crossed", len(fired))


class AlertMethods:
    """The usage alert RPCs of ``BillingService`` (mixed into its servicer).

    Args:
        db: The billing database.
        clock: The time alerts are created at.
        sweeper: Fires alerts; a new alert asks it to look at once.
    """

    def __init__(self, db: Database, clock: Callable[[], dt.datetime], sweeper: AlertSweeper) -> None:
        self._db = db
        self._clock = clock
        self.alerts = sweeper

    async def CreateUsageAlert(
        self, request: pb.CreateUsageAlertRequest, context: grpc.aio.ServicerContext
    ) -> res.UsageAlert:
        """Creates a usage alert of the tenant; a retry with its ``request_id`` returns the first.

        Raises:
            InvalidArgument: A malformed ``usage_alert_id``, a repeated threshold, ``UNKNOWN_METER``.
            AlreadyExists: ``USAGE_ALERT_ALREADY_EXISTS``.
        """
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        alert_id = validate_id(request.usage_alert_id, "usage_alert_id")
        row = UsageAlertRow(
            tenant_id=tenant_id,
            id=alert_id,
            display_name=request.usage_alert.display_name,
            meter=request.usage_alert.meter,
            thresholds=_thresholds(request.usage_alert),
            request_id=request.request_id or None,
            create_time=self._clock(),
            notification_channels=_channels(request.usage_alert, tenant_id),
        )
        name = alerts.alert_name(tenant_id, alert_id)
        note_resource(name)
        made = await self._db.write(tenant_id, alerts.add_alert, row)
        if made is None:
            raise errors.usage_alert_exists(name)
        self.alerts.poke()
        return alert_to_proto(made)

    async def GetUsageAlert(
        self, request: pb.GetUsageAlertRequest, context: grpc.aio.ServicerContext
    ) -> res.UsageAlert:
        """Returns a usage alert of the tenant.

        Raises:
            NotFound: ``USAGE_ALERT_NOT_FOUND``.
        """
        tenant_id, alert_id = _alert_name(request.name, "name")
        row = await self._db.read(tenant_id, alerts.get_alert, alert_id)
        if row is None:
            raise errors.usage_alert_not_found(request.name)
        return alert_to_proto(row)

    async def ListUsageAlerts(
        self, request: pb.ListUsageAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsageAlertsResponse:
        """Returns a page of the tenant's usage alerts, by ID."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, alerts.list_alerts, page)
        found, token = listing.messages(alert_to_proto)
        return pb.ListUsageAlertsResponse(usage_alerts=found, next_page_token=token)

    async def DeleteUsageAlert(
        self, request: pb.DeleteUsageAlertRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        """Deletes a usage alert of the tenant and its firings.

        Raises:
            NotFound: ``USAGE_ALERT_NOT_FOUND``.
        """
        tenant_id, alert_id = _alert_name(request.name, "name")
        if not await self._db.write(tenant_id, alerts.delete_alert, alert_id):
            raise errors.usage_alert_not_found(request.name)
        return empty_pb2.Empty()

    async def ListUsageAlertEvents(
        self, request: pb.ListUsageAlertEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsageAlertEventsResponse:
        """Returns a page of an alert's firings, newest first.

        Raises:
            NotFound: ``USAGE_ALERT_NOT_FOUND``.
        """
        tenant_id, alert_id = _alert_name(request.parent, "parent")
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, alerts.list_events, alert_id, page)
        if listing is None:
            raise errors.usage_alert_not_found(request.parent)
        found, token = listing.messages(event_to_proto)
        return pb.ListUsageAlertEventsResponse(usage_alert_events=found, next_page_token=token)


def _limits_of(tx: Tx, tenant_id: str) -> alerts.Limits:
    """Returns the hard and soft limit of each meter of the tenant's plan now."""
    plan = plan_store.plan_of_tenant(tx, tenant_id)
    return alerts.Limits(hard=plan_store.hard_limits(plan), soft=plan_store.soft_limits(plan))
