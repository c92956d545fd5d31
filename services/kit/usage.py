"""The usage outbox: usage events (CloudEvents 1.0) committed with the work they meter, relayed to billing.

A service that meters work writes the work's usage events into its own ``usage_outbox``
table in the same transaction as the state change that records the work (a model call
stored, a run ended), so the work is recorded and metered together or not at all. A
:class:`~services.kit.outbox.Relay` then sends pending rows in batches to
``BillingService.IngestUsageEvents`` and deletes them. Delivery is at least once
(a crash after sending sends again); billing records an event once by its CloudEvents
``source`` and ``id`` (section 3.1.1: together they identify an event) for as long
as it keeps the event, so every event counts exactly once. Event IDs must
therefore derive from the work (``model-call/7/model_input_tokens`` of a run's source),
never from the attempt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from sqlalchemy import MetaData, Table

from services.kit.outbox import Deliver, cloudevents_table

#: The CloudEvents ``type`` of usage of billing's built-in meter ``{meter}``, prefixed by this.
USAGE_TYPE_PREFIX = "dev.orchestrall.usage."
#: The key of ``data`` holding a built-in meter's quantity.
QUANTITY_KEY = "quantity"


def outbox_table(metadata: MetaData) -> Table:
    """Returns the ``usage_outbox`` table (:func:`services.kit.outbox.cloudevents_table`)."""
    return cloudevents_table(metadata, "usage_outbox")


class UsageEventRow(TypedDict):
    """A CloudEvent as an outbox holds it (``services.kit.outbox.cloudevents_table``), ``time`` in UTC."""

    source: str
    event_id: str
    tenant_id: str
    time: dt.datetime
    type: str
    subject: str
    data: dict[str, Any]


def meter_event(
    tenant_id: str,
    source: str,
    event_id: str,
    meter: str,
    quantity: float,
    subject: str,
    time: dt.datetime,
    dimensions: dict[str, str],
) -> UsageEventRow:
    """Returns the usage event of ``quantity`` of billing's built-in meter ``meter``.

    Args:
        tenant_id: Whose usage it is.
        source: The CloudEvents ``source``: the work's URI reference, stable across retries.
        event_id: Its ``id``, unique within ``source``.
        meter: The built-in meter, e.g. ``model_input_tokens``.
        quantity: How much, in the meter's unit.
        subject: The CloudEvents ``subject``, the resource that used it.
        time: When the usage happened.
        dimensions: What the built-in meters group by (``model``, ``agent``, ``principal``),
            put beside ``quantity`` in ``data``; empty values are left out.
    """
    data: dict[str, Any] = {k: v for k, v in dimensions.items() if v}
    data[QUANTITY_KEY] = quantity
    return UsageEventRow(
        source=source,
        event_id=event_id,
        tenant_id=tenant_id,
        time=time,
        type=USAGE_TYPE_PREFIX + meter,
        subject=subject,
        data=data,
    )


def to_messages(rows: Sequence[UsageEventRow | dict[str, Any]]) -> list[Any]:
    """Returns outbox rows as ``orchestrall.billing.v1.UsageEvent`` messages (CloudEvents 1.0)."""
    from google.protobuf import struct_pb2

    from orchestrall.billing.v1 import resources_pb2 as res
    from services.kit.timestamps import to_timestamp

    messages = []
    for row in rows:
        data = struct_pb2.Struct()
        data.update(row["data"])
        messages.append(
            res.UsageEvent(
                id=row["event_id"],
                source=row["source"],
                spec_version="1.0",
                type=row["type"],
                tenant=f"tenants/{row['tenant_id']}",
                subject=row["subject"],
                time=to_timestamp(row["time"]),
                data=data,
            )
        )
    return messages


def deliver_to_billing(channel_of: Callable[[], Any], timeout: float) -> Deliver:
    """Returns delivery over mTLS to ``BillingService.IngestUsageEvents`` (idempotent by source and id).

    Args:
        channel_of: Returns the channel to the billing service.
        timeout: Deadline of one delivery, in seconds.
    """
    from orchestrall.billing.v1 import billing_service_pb2 as pb
    from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc

    async def deliver(rows: Sequence[dict[str, Any]]) -> None:
        await pb_grpc.BillingServiceStub(channel_of()).IngestUsageEvents(
            pb.IngestUsageEventsRequest(events=to_messages(rows)), timeout=timeout
        )

    return deliver
