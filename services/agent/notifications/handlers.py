"""The notification RPCs of :class:`~services.agent.service.AgentService` (a mixin); ``send_notification``.

Channels have the standard methods (AIP-131..135); ``SendNotification`` records a
delivery and makes its first attempt (:mod:`.outbox`); deliveries are read with
``GetNotificationDelivery`` and ``ListNotificationDeliveries``. The workflow and
billing services call ``SendNotification`` on their own identity, for the tenant in
their ``orchestrall-tenant`` metadata (:mod:`services.kit.policy`), which must be the
tenant of the channel's name, as for any caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2
from jsonschema import Draft202012Validator

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent import errors
from services.agent.models import CHANNEL_FIELDS, DeliveryRow, DeliveryState, NotificationChannelRow
from services.agent.notifications import channels, outbox, store
from services.agent.notifications.channels import CHANNEL
from services.agent.notifications.outbox import DELIVERY, Notifier
from services.agent.tools import ToolError
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument, NotFound, invalid
from services.kit.fieldmask import update_paths
from services.kit.names import TENANT, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.sealing import Sealer
from services.kit.timestamps import to_timestamp, utcnow

DELIVERY_STATES = EnumMap(DeliveryState, res.NotificationDelivery.State, "STATE_")
IGNORED_FIELDS = frozenset({"name", "create_time", "update_time"})
DEFAULT_SUBJECT = "Notification"
SEND_NOTIFICATION = "tools/send_notification"


def delivery_to_proto(delivery: DeliveryRow) -> res.NotificationDelivery:
    """Maps a delivery row to its resource."""
    message = res.NotificationDelivery(
        name=DELIVERY.format(delivery.tenant_id, delivery.channel_id, delivery.id),
        subject=delivery.subject,
        message=delivery.message,
        state=DELIVERY_STATES.to_proto(DeliveryState(delivery.state)),
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        create_time=to_timestamp(delivery.create_time),
    )
    if delivery.next_attempt_time is not None:
        message.next_attempt_time.CopyFrom(to_timestamp(delivery.next_attempt_time))
    if delivery.end_time is not None:
        message.end_time.CopyFrom(to_timestamp(delivery.end_time))
    return message


def _check(channel: res.NotificationChannel, channel_id: str) -> None:
    violations: list[FieldViolation] = []
    if channel_id:
        try:
            validate_id(channel_id, "notification_channel_id")
        except InvalidArgument as error:
            violations += error.violations
    violations += channels.violations_of(channel, "notification_channel")
    if violations:
        raise InvalidArgument(violations)


class NotificationHandlers:
    """The notification RPCs; uses the service's ``_db``, ``_sealer`` and ``notifier``."""

    _db: Database
    _sealer: Sealer
    notifier: Notifier

    async def CreateNotificationChannel(
        self, request: pb.CreateNotificationChannelRequest, context: grpc.aio.ServicerContext
    ) -> res.NotificationChannel:
        """Creates a channel, its secrets sealed; idempotent by ``request_id``."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        _check(request.notification_channel, request.notification_channel_id)
        channel_id = request.notification_channel_id or new_id()
        name = CHANNEL.format(tenant_id, channel_id)
        kind, settings, secrets = channels.split(request.notification_channel)
        now = utcnow()
        row = NotificationChannelRow(
            tenant_id=tenant_id,
            id=channel_id,
            display_name=request.notification_channel.display_name,
            kind=kind,
            settings=settings,
            secrets_sealed=channels.seal(self._sealer, name, secrets),
            request_id=request.request_id or None,
            create_time=now,
            update_time=now,
        )
        note_resource(name)
        created = await self._db.write(tenant_id, store.create_channel, row)
        if created is None:
            raise errors.channel_exists(name)
        return channels.to_proto(created)

    async def GetNotificationChannel(
        self, request: pb.GetNotificationChannelRequest, context: grpc.aio.ServicerContext
    ) -> res.NotificationChannel:
        """Returns a channel without its secrets."""
        tenant_id, channel_id = CHANNEL.parse(request.name, "name")
        require_tenant(tenant_id)
        channel = await self._db.read(tenant_id, store.get_channel, channel_id)
        if channel is None:
            raise errors.channel_not_found(request.name)
        return channels.to_proto(channel)

    async def ListNotificationChannels(
        self, request: pb.ListNotificationChannelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNotificationChannelsResponse:
        """Returns a page of the tenant's channels, newest first."""
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_channels, page)
        listed, token = listing.messages(channels.to_proto)
        return pb.ListNotificationChannelsResponse(notification_channels=listed, next_page_token=token)

    async def UpdateNotificationChannel(
        self, request: pb.UpdateNotificationChannelRequest, context: grpc.aio.ServicerContext
    ) -> res.NotificationChannel:
        """Updates the display name and replaces the kind's configuration, as the mask says."""
        name = request.notification_channel.name
        tenant_id, channel_id = CHANNEL.parse(name, "notification_channel.name")
        require_tenant(tenant_id)
        paths = update_paths(request.update_mask, CHANNEL_FIELDS, IGNORED_FIELDS)
        given = request.notification_channel.WhichOneof("kind")
        if paths == CHANNEL_FIELDS:  # every field: the channel is replaced, its kind included
            replaced = given
            if given is None:
                raise invalid("notification_channel", f"must set one kind of {', '.join(channels.KINDS)}")
        else:
            kinds = [path for path in paths if path in channels.KINDS]
            if len(kinds) > 1:
                raise invalid("update_mask", "names more than one kind of channel")
            replaced = kinds[0] if kinds else None
            if replaced is not None and given != replaced:
                raise invalid(
                    f"notification_channel.{replaced}", "must be set: the update replaces the configuration"
                )
        values: dict[str, Any] = {}
        if "display_name" in paths:
            values["display_name"] = request.notification_channel.display_name
        if replaced is not None:
            _check(request.notification_channel, "")
            kind, settings, secrets = channels.split(request.notification_channel)
            sealed = channels.seal(self._sealer, name, secrets)
            values |= {"kind": kind, "settings": settings, "secrets_sealed": sealed}
        values["update_time"] = utcnow()
        note_resource(name)
        updated = await self._db.write(tenant_id, store.update_channel, channel_id, values)
        if updated is None:
            raise errors.channel_not_found(name)
        return channels.to_proto(updated)

    async def DeleteNotificationChannel(
        self, request: pb.DeleteNotificationChannelRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        """Deletes a channel; its deliveries stay."""
        tenant_id, channel_id = CHANNEL.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, store.delete_channel, channel_id):
            raise errors.channel_not_found(request.name)
        return empty_pb2.Empty()

    async def SendNotification(
        self, request: pb.SendNotificationRequest, context: grpc.aio.ServicerContext
    ) -> res.NotificationDelivery:
        """Records a delivery and makes its first attempt (:meth:`notify`)."""
        tenant_id, channel_id = CHANNEL.parse(request.name, "name")
        require_tenant(tenant_id)
        if not request.message.strip():
            raise invalid("message", "must not be blank")
        delivery = await self.notify(
            tenant_id, channel_id, request.subject, request.message, request.request_id
        )
        return delivery_to_proto(delivery)

    async def notify(
        self, tenant_id: str, channel_id: str, subject: str, message: str, request_id: str = ""
    ) -> DeliveryRow:
        """Records a notification's delivery and makes its first attempt (unless a retry of ``request_id``).

        Returns:
            The delivery after its first attempt; an earlier request's delivery as it is now.

        Raises:
            NotFound: ``NOTIFICATION_CHANNEL_NOT_FOUND``.
        """
        now = self.notifier.clock()
        delivery = DeliveryRow(
            tenant_id=tenant_id,
            channel_id=channel_id,
            id=new_id(),
            subject=subject or DEFAULT_SUBJECT,
            message=message,
            state=DeliveryState.PENDING,
            attempts=0,
            last_error="",
            request_id=request_id or None,
            create_time=now,
            next_attempt_time=self.notifier.claim_until(),
            end_time=None,
        )
        name = CHANNEL.format(tenant_id, channel_id)
        note_resource(DELIVERY.format(tenant_id, channel_id, delivery.id))
        created = await self._db.write(tenant_id, outbox.create_delivery, delivery)
        if created is None:
            raise errors.channel_not_found(name)
        recorded, new = created
        if not new:
            return recorded
        channel = await self._db.read(tenant_id, store.get_channel, channel_id)
        return await self.notifier.attempt(recorded, channel)

    async def GetNotificationDelivery(
        self, request: pb.GetNotificationDeliveryRequest, context: grpc.aio.ServicerContext
    ) -> res.NotificationDelivery:
        """Returns a delivery."""
        tenant_id, channel_id, delivery_id = DELIVERY.parse(request.name, "name")
        require_tenant(tenant_id)
        delivery = await self._db.read(tenant_id, outbox.get_delivery, channel_id, delivery_id)
        if delivery is None:
            raise errors.delivery_not_found(request.name)
        return delivery_to_proto(delivery)

    async def ListNotificationDeliveries(
        self, request: pb.ListNotificationDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNotificationDeliveriesResponse:
        """Returns a page of a channel's deliveries, newest first."""
        tenant_id, channel_id = CHANNEL.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, outbox.list_deliveries, channel_id, page)
        listed, token = listing.messages(delivery_to_proto)
        return pb.ListNotificationDeliveriesResponse(notification_deliveries=listed, next_page_token=token)

    def send_notification_tool(self, tenant_id: str) -> SendNotificationTool:
        """Returns the ``send_notification`` tool bound to ``tenant_id`` (for ``CallTool``)."""
        return SendNotificationTool(tenant_id, self)

    async def send_notification_run_tool(self, tenant_id: str) -> SendNotificationTool:
        """Returns ``send_notification`` for a run: its ``channel`` one of the tenant's channel IDs.

        The model is given the tenant's channels (up to :data:`MAX_OFFERED_CHANNELS`, newest
        first) as an ``enum`` with their display names, so it picks one that exists rather
        than inventing an ID; with none it gets the ID pattern and any call fails as not found.
        """
        rows = await self._db.read(tenant_id, store.channels_for_tools, MAX_OFFERED_CHANNELS)
        if not rows:
            return SendNotificationTool(tenant_id, self)
        offered = ", ".join(f"{row.id} ({row.kind}: {row.display_name or row.id})" for row in rows)
        channel = {"type": "string", "enum": [row.id for row in rows], "description": f"One of {offered}."}
        parameters = {
            **SEND_NOTIFICATION_PARAMETERS,
            "properties": {**SEND_NOTIFICATION_PARAMETERS["properties"], "channel": channel},
        }
        return SendNotificationTool(tenant_id, self, parameters=parameters)


SEND_NOTIFICATION_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "channel": {
            "type": "string",
            "description": "The channel's ID (the last part of tenants/{tenant}/notificationChannels/{id}).",
            "pattern": "^[a-z][a-z0-9-]{0,62}$",
        },
        "subject": {"type": "string"},
        "message": {"type": "string", "minLength": 1},
    },
    "required": ["channel", "message"],
}
#: The most channels a run's ``send_notification`` names in its schema.
MAX_OFFERED_CHANNELS = 50
#: The longest subject and message the tool sends, in characters.
MAX_SUBJECT, MAX_MESSAGE = 200, 4000
#: What calls are checked against: the schema the model is given, with the lengths. The model
#: is not given them: a model server turns ``maxLength`` into a grammar of that many optional
#: characters, and refuses one of 4,000 (llama.cpp; see services/agent/catalog/bounds.py).
SEND_NOTIFICATION_CHECKED: dict[str, Any] = {
    **SEND_NOTIFICATION_PARAMETERS,
    "properties": {
        **SEND_NOTIFICATION_PARAMETERS["properties"],
        "subject": {"type": "string", "maxLength": MAX_SUBJECT},
        "message": {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE},
    },
}
SEND_NOTIFICATION_DESCRIPTION = (
    "Sends a notification (email, SMS, Slack or webhook) on one of the tenant's notification channels."
)


@dataclass(frozen=True)
class SendNotificationTool:
    """The built-in ``tools/send_notification``, bound to a tenant (a ``RunTool``)."""

    tenant_id: str
    handlers: NotificationHandlers = field(repr=False, compare=False)
    name: str = SEND_NOTIFICATION
    function_name: str = "send_notification"
    description: str = SEND_NOTIFICATION_DESCRIPTION
    parameters: dict[str, Any] = field(default_factory=lambda: SEND_NOTIFICATION_PARAMETERS)
    validator: Draft202012Validator = field(
        default_factory=lambda: Draft202012Validator(SEND_NOTIFICATION_CHECKED), repr=False, compare=False
    )

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Sends the notification; returns its delivery, state, attempts and last error.

        Raises:
            ToolError: The channel does not exist.
        """
        try:
            delivery = await self.handlers.notify(
                self.tenant_id, arguments["channel"], arguments.get("subject", ""), arguments["message"]
            )
        except NotFound as error:
            raise ToolError(error.message) from None
        proto = delivery_to_proto(delivery)
        return {
            "delivery": proto.name,
            "state": res.NotificationDelivery.State.Name(proto.state),
            "attempts": proto.attempts,
            "last_error": proto.last_error,
        }
