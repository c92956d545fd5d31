"""Usage alerts: their SQL, when they fire, and the seam their notifications leave by.

An alert names a built-in meter and thresholds, each a quantity or a percentage of the
meter's hard or soft limit in the tenant's plan (OpenMeter's ``PERCENT`` and ``NUMBER``
balance thresholds; a plan's soft limit refuses nothing, it is what alerts are set at).
A sweep (:func:`fire_crossed`, one system transaction, on every replica after each
ingestion and every few seconds) compares each alert with its meter's running total of
the current billing period (``usage_totals``, kept with the events) and fires every
threshold reached and not yet fired in the period. A firing is a row of
``usage_alert_events`` whose unique key ``(tenant, alert, period, threshold)``
makes it happen once however many replicas sweep at once or again; in the same
transaction it writes an audit event (:func:`services.kit.audit.system_record`) and a
CloudEvent of type :data:`CROSSED_TYPE` into ``notification_outbox``, which a relay
hands to :func:`deliver`, at least once, the event's ``source`` and ``id`` staying the
same so a receiver can drop repeats.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import grpc
from sqlalchemy import and_, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_pb_grpc
from services.billing.models import (
    AUDIT_OUTBOX,
    NOTIFICATION_OUTBOX,
    Threshold,
    ThresholdType,
    UsageAlert,
    UsageAlertEvent,
    UsageAlertEventRow,
    UsageAlertRow,
    UsageTotal,
)
from services.billing.plans import period_of
from services.kit.audit import system_record
from services.kit.clients import MeshClients
from services.kit.db import Tx
from services.kit.names import new_id
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Order, Repository, table_of
from services.kit.usage import UsageEventRow

log = logging.getLogger(__name__)

#: The CloudEvents ``type`` of a threshold crossed (reverse DNS of orchestrall.dev, then
#: the producer, the subject and the past-tense action, as CloudEvents 1.0 section 3.1.1
#: advises for ``type``).
CROSSED_TYPE = "dev.orchestrall.billing.usage_threshold.crossed"
#: The CloudEvents ``source`` of an alert's notifications is this, then the alert's name.
SOURCE_PREFIX = "//billing.orchestrall.dev/"

ALERTS = Repository(UsageAlert, UsageAlertRow, order=(Order("id"),))
EVENTS = Repository(UsageAlertEvent, UsageAlertEventRow, order=NEWEST_FIRST)
_ALERTS = ALERTS.table
_EVENTS = EVENTS.table
_TOTALS = table_of(UsageTotal)
_NOTIFY = insert(NOTIFICATION_OUTBOX)
_AUDIT = insert(AUDIT_OUTBOX)


def alert_name(tenant_id: str, alert_id: str) -> str:
    """Returns ``tenants/{tenant}/usageAlerts/{alert}``."""
    return f"tenants/{tenant_id}/usageAlerts/{alert_id}"


def add_alert(tx: Tx, row: UsageAlertRow) -> UsageAlertRow | None:
    """Inserts an alert, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        ``row``, or the earlier request's alert; None when the tenant has an alert of that ID.
    """
    return ALERTS.create(tx, row)


def get_alert(tx: Tx, alert_id: str) -> UsageAlertRow | None:
    """Returns the tenant's alert, or None."""
    return ALERTS.get(tx, alert_id)


def list_alerts(tx: Tx, page: Page) -> Listing[UsageAlertRow]:
    """Returns a page of the tenant's alerts, by ID."""
    return ALERTS.list_page(tx, page)


def delete_alert(tx: Tx, alert_id: str) -> bool:
    """Deletes the tenant's alert and its events; returns whether there was one."""
    tx.execute(_EVENTS.delete().where(_EVENTS.c.tenant_id == tx.tenant_id, _EVENTS.c.alert_id == alert_id))
    deleted = ALERTS.delete(tx, alert_id)
    tx.changed |= deleted
    return deleted


def list_events(tx: Tx, alert_id: str, page: Page) -> Listing[UsageAlertEventRow] | None:
    """Returns a page of an alert's firings, newest first; None when the tenant has no such alert."""
    if ALERTS.get(tx, alert_id) is None:
        return None
    return EVENTS.list_page(tx, page, _EVENTS.c.alert_id == alert_id)


class Limits(NamedTuple):
    """A tenant's plan's hard and soft limits: meter to quantity (absent: none)."""

    hard: Mapping[str, float]
    soft: Mapping[str, float]

    def of(self, threshold: Threshold, meter: str) -> float:
        """Returns the limit a firing of ``threshold`` reports and a percentage is of (0: none).

        That is the soft limit for a ``SOFT_LIMIT_PERCENT`` threshold, else the hard limit.
        """
        chosen = self.soft if threshold["type"] == ThresholdType.SOFT_LIMIT_PERCENT else self.hard
        return float(chosen.get(meter, 0))


def threshold_quantity(threshold: Threshold, limit: float) -> float | None:
    """Returns the usage a threshold stands for, or None for a percentage of no limit (0: unlimited)."""
    if threshold["type"] == ThresholdType.QUANTITY:
        return float(threshold["value"])
    return threshold["value"] / 100 * limit if limit > 0 else None


def notification(event: UsageAlertEventRow, display_name: str, channels: Sequence[str] = ()) -> UsageEventRow:
    """Returns the CloudEvent of a firing, for the notification outbox.

    ``source`` is the alert's URI reference and ``id`` names the period and the
    threshold, so the same firing always has the same key. ``data.notificationChannels``
    are the channels it is sent on (:class:`ChannelDelivery`).
    """
    name = alert_name(event.tenant_id, event.alert_id)
    threshold = {"type": event.threshold_type, "value": event.threshold_value}
    return UsageEventRow(
        source=SOURCE_PREFIX + name,
        event_id=f"{event.period_start:%Y-%m}/{event.threshold_type.lower()}-{event.threshold_value:g}",
        tenant_id=event.tenant_id,
        time=event.create_time,
        type=CROSSED_TYPE,
        subject=f"{name}/events/{event.id}",
        data={
            "alert": name,
            "displayName": display_name,
            "meter": event.meter,
            "threshold": threshold,
            "thresholdQuantity": event.threshold_quantity,
            "quantity": event.quantity,
            "limit": event.limit,
            "periodStartTime": event.period_start.isoformat(),
            "periodEndTime": event.period_end.isoformat(),
            "notificationChannels": list(channels),
        },
    )


def fire_crossed(
    tx: Tx, now: dt.datetime, limits_of: Callable[[Tx, str], Limits]
) -> list[UsageAlertEventRow]:
    """Fires every threshold of every tenant's alerts that the current period's usage reached (system work).

    Args:
        tx: A system transaction (every tenant's rows).
        now: The instant whose billing period is looked at; the firings' time.
        limits_of: The hard and soft limits of each meter in a tenant's plan, read in ``tx``.

    Returns:
        The firings made by this call; those made before (by any replica) are not repeated.
    """
    start, end = period_of(now)
    watched = tx.execute(
        select(
            _ALERTS.c.tenant_id, _ALERTS.c.id, _ALERTS.c.display_name, _ALERTS.c.meter, _ALERTS.c.thresholds,
            _ALERTS.c.notification_channels,
            _TOTALS.c.quantity,
        ).join(
            _TOTALS,
            and_(
                _TOTALS.c.tenant_id == _ALERTS.c.tenant_id,
                _TOTALS.c.meter == _ALERTS.c.meter,
                _TOTALS.c.period_start == start,
            ),
        )
    ).all()  # fmt: skip
    if not watched:
        return []
    fired = select(
        _EVENTS.c.tenant_id, _EVENTS.c.alert_id, _EVENTS.c.threshold_type, _EVENTS.c.threshold_value
    )
    fired_before = {
        (tenant_id, alert_id, kind, float(value))
        for tenant_id, alert_id, kind, value in tx.execute(fired.where(_EVENTS.c.period_start == start))
    }
    dialect = postgresql if tx.dialect == "postgresql" else sqlite
    made: list[UsageAlertEventRow] = []
    for tenant_id, alert_id, display_name, meter, thresholds, channels, quantity in watched:
        limits = limits_of(tx, tenant_id)
        for threshold in thresholds:
            key = (tenant_id, alert_id, threshold["type"], float(threshold["value"]))
            limit = limits.of(threshold, meter)
            level = threshold_quantity(threshold, limit)
            if key in fired_before or level is None or quantity < level:
                continue
            event = UsageAlertEventRow(
                tenant_id=tenant_id,
                alert_id=alert_id,
                id=new_id(),
                meter=meter,
                threshold_type=threshold["type"],
                threshold_value=float(threshold["value"]),
                period_start=start,
                period_end=end,
                quantity=float(quantity),
                threshold_quantity=level,
                limit=limit,
                create_time=now,
            )
            # A replica sweeping at once inserts the same key first: then this one skips it.
            inserted = tx.execute(
                dialect.insert(_EVENTS).values(EVENTS.values(event)).on_conflict_do_nothing().returning(_EVENTS.c.id)
            ).first()  # fmt: skip
            if inserted is None:
                continue
            name = alert_name(tenant_id, alert_id)
            tx.execute(_NOTIFY, dict(notification(event, display_name, channels)))
            tx.execute(_AUDIT, system_record("billing", tenant_id, CROSSED_TYPE, name, now))
            made.append(event)
    tx.changed |= bool(made)
    return made


def message_of(event: Mapping[str, Any]) -> tuple[str, str]:
    """Returns the subject and text a person reads for a firing (a ``notification_outbox`` row)."""
    data = event["data"]
    threshold = data["threshold"]
    soft = threshold["type"] == ThresholdType.SOFT_LIMIT_PERCENT
    percent = soft or threshold["type"] == ThresholdType.PERCENT
    level = f"{threshold['value']:g} %" if percent else f"{threshold['value']:g}"
    title = data.get("displayName") or data["alert"]
    subject = f"Usage alert: {title} reached {level}"
    text = (
        f"{data['meter']} is at {data['quantity']:g} in the billing period from {data['periodStartTime']} "
        f"to {data['periodEndTime']}: threshold {level} ({data['thresholdQuantity']:g}"
        + (f" of the plan's {'soft ' if soft else ''}limit {data['limit']:g})" if data["limit"] else ")")
        + f". Alert {data['alert']}, event {event['source'].removeprefix(SOURCE_PREFIX)} {event['event_id']}."
    )
    return subject[:200], text[:4000]


class ChannelDelivery:
    """Sends usage alert firings on the tenant's notification channels: the relay's receiver.

    Each firing goes to each of its ``data.notificationChannels`` through the agent
    service's ``SendNotification``, as the billing service's own identity acting for the
    tenant, with the request ID ``{source}#{id}@{channel}``: the relay delivers at least
    once, and a repeat returns the first delivery (the agent service retries a failing
    channel itself, with backoff). A firing without channels is only logged.

    Args:
        stub: The agent service's stub over billing's mTLS channel.
        timeout: Deadline of one call, in seconds.
    """

    def __init__(self, stub: agent_pb_grpc.AgentServiceStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def deliver(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Sends a batch; raises (and the rows stay in the outbox) when the agent service fails."""
        for event in rows:
            channels = event["data"].get("notificationChannels") or []
            log.info("usage alert %s %s: %d channels", event["source"], event["event_id"], len(channels))
            subject, text = message_of(event)
            for channel in channels:
                key = hashlib.sha256(f"{event['source']}#{event['event_id']}@{channel}".encode()).hexdigest()
                request = agent_pb.SendNotificationRequest(
                    name=channel, subject=subject, message=text, request_id=key[:64]
                )
                try:
                    await self._stub.SendNotification(
                        request, timeout=self._timeout, metadata=MeshClients.for_tenant(event["tenant_id"])
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() in _PERMANENT:  # a deleted or bad channel: retrying changes nothing
                        log.warning("usage alert not sent on %s: %s", channel, error.code())
                        continue
                    raise


#: Answers of ``SendNotification`` that another try would get again.
_PERMANENT = frozenset(
    {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}
)
