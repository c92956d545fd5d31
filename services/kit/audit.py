"""The audit log: every mutating call recorded in the same transaction as its change.

Each service writes audit rows into its own ``audit_outbox`` table (a
transactional outbox): the audit log registers a commit hook on the service's
own :class:`~services.kit.db.Database`, which adds the row to the first write
transaction of an audited call that changes data, so the record and the change
commit or roll back together. A relay (:class:`services.kit.outbox.OutboxRelay`) then delivers
outbox rows to the
auth service, which owns the tenant-visible log (``ListAuditEvents``); delivery
is at least once and idempotent by event ID.

An RPC is audited when its permission's verb is ``create``, ``update``,
``delete`` or ``import``, or when it is anonymous and bound to an HTTP POST (sign-up, token
issuance). A call that writes nothing (a refused call, a sign-in) is recorded
by the guard in a transaction of its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Column, DateTime, MetaData, String, Table, insert

from services.kit.auth import Principal, current_principal
from services.kit.db import Database, Tx
from services.kit.outbox import Deliver, OutboxRelay
from services.kit.timestamps import utcnow

log = logging.getLogger(__name__)

RESOURCE_FIELDS = ("name", "parent", "tenant")
#: Characters of a resource name an audit record keeps (its column's width).
MAX_RESOURCE = 500


def outbox_table(metadata: MetaData) -> Table:
    """Returns the ``audit_outbox`` table, defined on a service's metadata (one per service database)."""
    return Table(
        "audit_outbox",
        metadata,
        Column("id", String(63), primary_key=True),
        Column("tenant_id", String(63), nullable=False),
        Column("time", DateTime(timezone=True), nullable=False, index=True),
        Column("subject", String(300), nullable=False),
        Column("principal_kind", String(20), nullable=False),
        Column("method", String(200), nullable=False),
        Column("resource", String(MAX_RESOURCE), nullable=False),
        Column("outcome", String(40), nullable=False),
        Column("service", String(40), nullable=False),
    )


@dataclass
class _Call:
    method: str
    resource: str
    recorded: bool = False


_call: ContextVar[_Call | None] = ContextVar("orchestrall_audit_call", default=None)


def _resource_of(request: Any) -> str:
    """The resource a request names: ``name``, ``parent`` or ``tenant``, or a nested resource's ``name``.

    Runs before the request's field rules are checked, so the name is cut to
    :data:`MAX_RESOURCE` characters; a request that could not be read names none.
    """
    if not isinstance(request, Message):
        return ""
    for field in RESOURCE_FIELDS:
        value = getattr(request, field, "")
        if isinstance(value, str) and value:
            return value[:MAX_RESOURCE]
    for descriptor, value in request.ListFields():
        name = getattr(value, "name", None)
        if descriptor.message_type is not None and isinstance(name, str) and name:
            return name[:MAX_RESOURCE]
    return ""


def note_resource(name: str) -> None:
    """Names the resource of the current audited call (e.g. a created resource's new name)."""
    call = _call.get()
    if call is not None:
        call.resource = name


def tenant_of(principal: Principal, resource: str) -> str | None:
    """Returns whose log an event belongs to: the caller's tenant, else the tenant in the resource name."""
    if principal.tenant:
        return principal.tenant
    parts = resource.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "tenants" and parts[1] else None


def system_record(service: str, tenant_id: str, action: str, resource: str, time: Any) -> dict[str, Any]:
    """Returns an audit outbox row of something a service did on its own, for no caller (an alert firing).

    The caller writes it into its ``audit_outbox`` in the transaction of the change it
    records; the relay delivers it as any other.

    Args:
        service: The service; also the event's subject (principal kind ``service``).
        tenant_id: Whose log it goes in.
        action: What happened, in the method column (e.g. a CloudEvents ``type``).
        resource: The resource it happened to.
        time: When, an aware datetime.
    """
    return {
        "id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "time": time,
        "subject": service,
        "principal_kind": "service",
        "method": action[:200],
        "resource": resource[:MAX_RESOURCE],
        "outcome": "OK",
        "service": service,
    }


class AuditLog:
    """A service's audit outbox and its relay.

    Args:
        service: The service name, recorded with each event.
        db: The service's database; the log registers its commit hook there.
        table: Its ``audit_outbox`` table (from :func:`outbox_table`).
        deliver: Stores a batch of events in the tenant-visible log; must be
            idempotent by ``id``.
        interval_seconds: How often the relay looks for undelivered events.
    """

    def __init__(
        self, service: str, db: Database, table: Table, deliver: Deliver, interval_seconds: float = 1.0
    ) -> None:
        self.service = service
        self._db = db
        self._table = table
        self._insert = insert(table)
        self._relay = OutboxRelay(f"audit-{service}", db, table, deliver, interval_seconds)
        db.before_commit(self._before_commit)

    def begin_call(self, method: str, request: Any) -> None:
        """Starts the audit context of an audited RPC (called by the guard)."""
        _call.set(_Call(method, _resource_of(request)))

    def _row(self, principal: Principal, call: _Call, outcome: str) -> dict[str, Any] | None:
        tenant = tenant_of(principal, call.resource)
        if tenant is None:
            return None
        return {
            "id": str(uuid.uuid4()),
            "tenant_id": tenant,
            "time": utcnow(),
            "subject": principal.subject,
            "principal_kind": principal.kind,
            "method": call.method,
            "resource": call.resource,
            "outcome": outcome,
            "service": self.service,
        }

    def _before_commit(self, tx: Tx) -> None:
        # Runs in the worker thread, in a copy of the calling task's context: the call
        # record is the same object, so marking it recorded is seen by the guard.
        call = _call.get()
        if call is None or call.recorded:
            return
        row = self._row(current_principal(), call, "OK")
        if row is not None:
            if tx.bound_tenant != row["tenant_id"]:  # a sign-up, or a batch spanning tenants
                tx.bind(row["tenant_id"])
            tx.execute(self._insert, row)
        call.recorded = True

    async def record_unrecorded(self, outcome: str) -> None:
        """Records the current audited call with ``outcome`` unless its change already did.

        For calls that changed nothing, so no transaction carried their event: failures
        (``PERMISSION_DENIED``...) and successes that write nothing (a sign-in).

        Args:
            outcome: A ``google.rpc.Code`` name.
        """
        call = _call.get()
        if call is None or call.recorded:
            return
        call.recorded = True
        row = self._row(current_principal(), call, outcome)
        if row is None:
            return
        try:
            await self._db.write(row["tenant_id"], lambda tx: tx.execute(self._insert, row))
        except Exception:  # never mask the call's own outcome
            log.exception("audit event of %s (%s) not recorded", call.method, outcome)

    async def relay_once(self, limit: int = 500) -> int:
        """Delivers up to ``limit`` outbox events, oldest first, then deletes them (the relay's pass).

        Returns:
            How many were delivered.
        """
        return await self._relay.relay_once(limit)

    async def start(self) -> None:
        """Starts the relay in the background."""
        await self._relay.start()

    async def stop(self) -> None:
        """Stops the relay after a last delivery attempt; undelivered events wait in the outbox."""
        await self._relay.stop()


def deliver_to_auth(channel_of: Callable[[], Any], timeout: float) -> Deliver:
    """Returns delivery over mTLS to ``AuthService.IngestAuditEvents``, for every service but auth.

    Args:
        channel_of: Returns the channel to the auth service.
        timeout: Deadline of one delivery, in seconds.
    """
    from orchestrall.auth.v1 import auth_service_pb2 as pb
    from orchestrall.auth.v1 import auth_service_pb2_grpc as pb_grpc
    from orchestrall.auth.v1 import resources_pb2 as res
    from services.kit.timestamps import to_timestamp

    async def deliver(rows: Sequence[dict[str, Any]]) -> None:
        events = [
            res.AuditEvent(
                name=f"tenants/{row['tenant_id']}/auditEvents/{row['id']}",
                time=to_timestamp(row["time"]),
                subject=row["subject"],
                principal_kind=row["principal_kind"],
                method=row["method"],
                resource=row["resource"],
                outcome=row["outcome"],
                service=row["service"],
            )
            for row in rows
        ]
        await pb_grpc.AuthServiceStub(channel_of()).IngestAuditEvents(
            pb.IngestAuditEventsRequest(audit_events=events), timeout=timeout
        )

    return deliver
