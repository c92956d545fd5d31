"""Webhook triggers: ``CreateTrigger``, ``GetTrigger``, ``ListTriggers``, ``DeleteTrigger`` and deliveries.

A trigger gives a workflow a URL through the gateway, ``POST /v1/{trigger}:deliver``,
that needs no token: each delivery is signed instead, as Standard Webhooks 1.0
specifies. The sender sends three headers,

* ``webhook-id``: the delivery's ID, the same on every retry of it;
* ``webhook-timestamp``: integer seconds since the Unix epoch;
* ``webhook-signature``: space-separated ``v1,<base64>`` signatures, each the
  HMAC-SHA256 (RFC 2104) of ``{id}.{timestamp}.{body}`` keyed by the secret's bytes,

and the body, which becomes the run's input. The secret is ``whsec_`` and the
base64 of 32 random bytes; it is returned once, by ``CreateTrigger``, and stored
sealed (:mod:`services.kit.sealing`, AES-256-GCM bound to the trigger's name).
Signatures are checked by :mod:`services.kit.webhooks` (the ``standardwebhooks``
library, constant-time comparison); a delivery whose timestamp is more than
:data:`TOLERANCE_SECONDS` from now is refused, so a captured delivery cannot be
replayed later. The delivery's ``webhook-id`` is the run's ``request_id``: a
repeated delivery finds the run the first one started.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2

from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database
from services.kit.errors import invalid
from services.kit.names import ResourceName, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.sealing import Sealer, SealError
from services.kit.timestamps import to_timestamp, utcnow
from services.kit.webhooks import HEADERS, SignatureMismatch, new_secret
from services.kit.webhooks import verify as verify_signature
from services.workflow import errors, trigger_store
from services.workflow.models import TriggerRow

if TYPE_CHECKING:
    from services.workflow.models import WorkflowRunRow

TRIGGER = ResourceName.of(res.Trigger)
WORKFLOW = ResourceName.of(res.Workflow)
WORKFLOW_RUN = ResourceName.of(res.WorkflowRun)
#: How far a delivery's ``webhook-timestamp`` may be from now (Standard Webhooks 1.0 suggests 5 minutes).
TOLERANCE_SECONDS = 300
#: The most characters of a ``webhook-id`` (it is stored as the run's request ID).
MAX_DELIVERY_ID = 100
#: The most characters of a run's input (``WorkflowRun.input``).
MAX_INPUT = 32_000
JSON = "application/json"


def trigger_to_proto(trigger: TriggerRow, secret: str = "") -> res.Trigger:
    """Maps a trigger row to its resource; ``secret`` only in ``CreateTrigger``'s answer."""
    name = TRIGGER.format(trigger.tenant_id, trigger.workflow_id, trigger.id)
    return res.Trigger(
        name=name,
        url_path=f"/v1/{name}:deliver",
        secret=secret,
        create_time=to_timestamp(trigger.create_time),
    )


def delivery_headers(metadata: tuple[tuple[str, str | bytes], ...] | None) -> dict[str, str]:
    """Returns the Standard Webhooks headers of a call's metadata (the gateway passes HTTP headers on).

    Raises:
        Unauthenticated: ``INVALID_SIGNATURE``, a header is missing or empty.
    """
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if key in HEADERS and isinstance(value, str):
            found[key] = value
    if any(not found.get(header) for header in HEADERS):
        raise errors.invalid_signature()
    return found


def check_timestamp(header: str, now: float) -> None:
    """Checks a delivery's ``webhook-timestamp`` against the replay window.

    Args:
        header: The header: integer seconds since the Unix epoch.
        now: The current time, seconds since the epoch.

    Raises:
        Unauthenticated: ``INVALID_SIGNATURE``, the header is not an integer.
        InvalidArgument: ``TIMESTAMP_OUT_OF_RANGE``, more than :data:`TOLERANCE_SECONDS` from ``now``.
    """
    if not header.isascii() or not header.isdigit() or len(header) > 12:
        raise errors.invalid_signature()
    if abs(int(header) - now) > TOLERANCE_SECONDS:
        raise errors.timestamp_out_of_range(TOLERANCE_SECONDS)


def verify(secret: str, body: str, headers: dict[str, str]) -> None:
    """Checks a delivery's signature (:func:`services.kit.webhooks.verify`).

    Raises:
        Unauthenticated: ``INVALID_SIGNATURE``, no ``v1`` signature matches, or one is malformed.
    """
    try:
        verify_signature(secret, body, headers)
    except SignatureMismatch:
        raise errors.invalid_signature() from None


class TriggerHandlers:
    """The trigger RPCs of :class:`~services.workflow.service.WorkflowService` (a mixin).

    Uses the service's ``_db`` (the workflow database), ``_sealer`` (seals secrets) and
    ``start_run`` (starts a run, idempotent by request ID).
    """

    _db: Database
    _sealer: Sealer

    if TYPE_CHECKING:

        async def start_run(
            self, tenant_id: str, workflow_id: str, run_input: str, request_id: str | None, *, trigger: str
        ) -> WorkflowRunRow:
            """Starts a run, or finds the one with ``request_id`` (``WorkflowService.start_run``)."""

    async def CreateTrigger(
        self, request: pb.CreateTriggerRequest, context: grpc.aio.ServicerContext
    ) -> res.Trigger:
        """Creates a trigger with a new secret, returned only here.

        Raises:
            InvalidArgument: ``trigger_id`` is not an AIP-122 ID.
            NotFound: ``WORKFLOW_NOT_FOUND``.
            AlreadyExists: ``TRIGGER_ALREADY_EXISTS``.
        """
        tenant_id, workflow_id = WORKFLOW.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if request.trigger_id:
            validate_id(request.trigger_id, "trigger_id")
        trigger_id = request.trigger_id or new_id()
        name = TRIGGER.format(tenant_id, workflow_id, trigger_id)
        secret = new_secret()
        trigger = TriggerRow(
            tenant_id=tenant_id,
            workflow_id=workflow_id,
            id=trigger_id,
            secret_sealed=self._sealer.seal(secret.encode(), name),
            create_time=utcnow(),
        )
        note_resource(name)
        try:
            created = await self._db.write(tenant_id, trigger_store.create_trigger, trigger)
        except LookupError:
            raise errors.workflow_not_found(request.parent) from None
        if created is None:
            raise errors.trigger_exists(name)
        return trigger_to_proto(created, secret)

    async def GetTrigger(
        self, request: pb.GetTriggerRequest, context: grpc.aio.ServicerContext
    ) -> res.Trigger:
        """Returns a trigger without its secret.

        Raises:
            NotFound: ``TRIGGER_NOT_FOUND``.
        """
        tenant_id, workflow_id, trigger_id = TRIGGER.parse(request.name, "name")
        require_tenant(tenant_id)
        trigger = await self._db.read(tenant_id, trigger_store.get_trigger, workflow_id, trigger_id)
        if trigger is None:
            raise errors.trigger_not_found(request.name)
        return trigger_to_proto(trigger)

    async def ListTriggers(
        self, request: pb.ListTriggersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTriggersResponse:
        """Returns a page of a workflow's triggers, newest first, without secrets.

        Raises:
            NotFound: ``WORKFLOW_NOT_FOUND``.
        """
        tenant_id, workflow_id = WORKFLOW.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listed = await self._db.read(tenant_id, trigger_store.list_triggers, workflow_id, page)
        if listed is None:
            raise errors.workflow_not_found(request.parent)
        triggers, token = listed.messages(trigger_to_proto)
        return pb.ListTriggersResponse(triggers=triggers, next_page_token=token)

    async def DeleteTrigger(
        self, request: pb.DeleteTriggerRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        """Deletes a trigger; later deliveries to it get ``INVALID_SIGNATURE``.

        Raises:
            NotFound: ``TRIGGER_NOT_FOUND``.
        """
        tenant_id, workflow_id, trigger_id = TRIGGER.parse(request.name, "name")
        require_tenant(tenant_id)
        note_resource(request.name)
        if not await self._db.write(tenant_id, trigger_store.delete_trigger, workflow_id, trigger_id):
            raise errors.trigger_not_found(request.name)
        return empty_pb2.Empty()

    async def DeliverWebhook(
        self, request: pb.DeliverWebhookRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        """Starts a run for a signed delivery, or finds the run of an earlier one with its ``webhook-id``.

        Checks that do not depend on the trigger come first (headers, timestamp, body),
        then the trigger is looked up and the signature checked; an unknown trigger and a
        bad signature give the same error.

        Returns:
            ``{"run": "<run name>"}``, ``application/json``.

        Raises:
            Unauthenticated: ``INVALID_SIGNATURE``.
            InvalidArgument: ``TIMESTAMP_OUT_OF_RANGE``; ``INVALID_ARGUMENT`` for an empty body,
                one that is not UTF-8 or longer than a run's input may be, or a ``webhook-id``
                over :data:`MAX_DELIVERY_ID` characters.
        """
        tenant_id, workflow_id, trigger_id = TRIGGER.parse(request.name, "name")
        headers = delivery_headers(context.invocation_metadata())
        check_timestamp(headers["webhook-timestamp"], time.time())
        delivery_id = headers["webhook-id"]
        if len(delivery_id) > MAX_DELIVERY_ID:
            raise invalid("webhook-id", f"must be at most {MAX_DELIVERY_ID} characters")
        try:
            body = request.body.data.decode()
        except UnicodeDecodeError:
            raise invalid("body", "must be UTF-8 text") from None
        if not body.strip():
            raise invalid("body", "must not be empty")
        if len(body) > MAX_INPUT:
            raise invalid("body", f"must be at most {MAX_INPUT} characters (a run's input)")
        trigger = await self._db.read(tenant_id, trigger_store.get_trigger, workflow_id, trigger_id)
        if trigger is None:
            raise errors.invalid_signature()
        try:
            secret = self._sealer.open(trigger.secret_sealed, request.name).decode()
        except SealError:  # sealed with another key: no delivery can be verified
            raise errors.invalid_signature() from None
        verify(secret, body, headers)
        run = await self.start_run(tenant_id, workflow_id, body, delivery_id, trigger=request.name)
        answer = {"run": WORKFLOW_RUN.format(tenant_id, workflow_id, run.id)}
        return httpbody_pb2.HttpBody(content_type=JSON, data=json.dumps(answer).encode())
