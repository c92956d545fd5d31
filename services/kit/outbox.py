"""A transactional outbox's relay: rows written with the changes they record, delivered afterwards.

A service writes an outbox row in the same transaction as the change it records, so
both commit or neither does (the "transactional outbox" pattern). An :class:`OutboxRelay`
then reads the oldest rows in one transaction, delivers them with no transaction
open, and deletes what it delivered in another. Delivery is therefore at least
once: a crash (or a failed delete) between delivery and deletion delivers the rows
again, so the receiver must ignore what it has seen by the rows' keys (the audit log
by event ID, billing by CloudEvents ``source`` and ``id``). Every replica of a
service may relay the same outbox; two relays that read the same rows both deliver
them, which the receiver's deduplication absorbs.

Used by the audit log (:mod:`services.kit.audit`) and the usage metering outbox
(:mod:`services.kit.usage`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, delete, select, tuple_

from services.kit.db import Database, Tx
from services.kit.relay import Relay

log = logging.getLogger(__name__)

#: Delivers a batch of outbox rows (column name to value); raises when they were not taken.
Deliver = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]


def cloudevents_table(metadata: MetaData, name: str) -> Table:
    """Returns an outbox table of CloudEvents 1.0, defined on a service's metadata.

    Its key is the event's CloudEvents key, ``(source, event_id)`` (section 3.1.1:
    together they identify an event), so an event is in the outbox once; the other
    columns are the event's ``type``, ``subject``, ``time`` (aware UTC) and ``data``
    (a JSON object), and the tenant it belongs to.
    """
    return Table(
        name,
        metadata,
        Column("source", String(255), primary_key=True),
        Column("event_id", String(255), primary_key=True),
        Column("tenant_id", String(63), nullable=False),
        Column("time", DateTime(timezone=True), nullable=False, index=True),
        Column("type", String(255), nullable=False),
        Column("subject", String(1024), nullable=False),
        Column("data", JSON, nullable=False),
    )


class OutboxRelay:
    """Delivers an outbox table's rows, oldest first, and deletes them (the loop: ``kit.relay.Relay``).

    Args:
        name: What the outbox holds, for logs and the task's name (``audit-agent``).
        db: The database holding the table.
        table: The outbox table; its primary key identifies a row, its ``time``
            column orders delivery.
        deliver: Hands a batch to its receiver, which must ignore rows it has seen.
        interval_seconds: How often the relay looks for undelivered rows.
        batch: The most rows one delivery carries.
    """

    def __init__(
        self,
        name: str,
        db: Database,
        table: Table,
        deliver: Deliver,
        interval_seconds: float = 1.0,
        batch: int = 500,
    ) -> None:
        self.name = name
        self._db = db
        self._table = table
        self._key = list(table.primary_key.columns)
        self._deliver = deliver
        self._batch = batch
        self._loop = Relay(name, self.relay_once, interval_seconds)

    def _pending(self, tx: Tx, limit: int) -> list[dict[str, Any]]:
        query = select(self._table).order_by(self._table.c.time, *self._key).limit(limit)
        return [dict(row._mapping) for row in tx.execute(query)]

    def _forget(self, tx: Tx, keys: list[tuple[Any, ...]]) -> None:
        key = self._key[0] if len(self._key) == 1 else tuple_(*self._key)
        values = [k[0] for k in keys] if len(self._key) == 1 else keys
        tx.execute(delete(self._table).where(key.in_(values)))

    async def relay_once(self, limit: int | None = None) -> int:
        """Delivers up to ``limit`` (default the batch size) rows, oldest first, then deletes them.

        Delivery happens between two transactions, never inside one: a crash in
        between delivers the rows again, which the receiver ignores by their keys.

        Returns:
            How many rows were delivered.

        Raises:
            Exception: Whatever the delivery raised; the rows stay for the next try.
        """
        rows = await self._db.system(self._pending, limit or self._batch)
        if not rows:
            return 0
        await self._deliver(rows)
        await self._db.system(self._forget, [tuple(row[c.key] for c in self._key) for row in rows])
        return len(rows)

    async def drain(self) -> int:
        """Delivers batches until the outbox is empty.

        Returns:
            How many rows were delivered.
        """
        total = 0
        while (delivered := await self.relay_once()) > 0:
            total += delivered
        return total

    def poke(self) -> None:
        """Wakes the relay now rather than at its next tick (after a write that added rows)."""
        self._loop.poke()

    async def start(self) -> None:
        """Starts the relay in the background."""
        await self._loop.start()

    async def stop(self) -> None:
        """Stops the relay after a last delivery attempt; undelivered rows wait in the outbox."""
        await self._loop.stop()
