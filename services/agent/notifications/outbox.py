"""Notifications' deliveries: a transactional outbox in the agent database, and its relay.

``SendNotification`` inserts the delivery (idempotent by ``request_id``, per channel),
already claimed by the caller for :data:`CLAIM_SECONDS`, commits, makes the first
attempt and records its outcome. A failed attempt leaves the delivery ``PENDING``
with ``next_attempt_time`` after an exponential backoff (:func:`backoff_seconds`);
the relay (:class:`services.kit.relay.Relay`, on every replica) claims due
deliveries and attempts them again, up to :data:`MAX_ATTEMPTS` in all. A claim is a
conditional update of ``next_attempt_time`` (to now plus :data:`CLAIM_SECONDS`), so
two replicas never attempt one delivery at once, and a replica that dies mid-attempt
leaves a claim that expires: the delivery is attempted again, at least once in all
(a webhook receiver dedupes by ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import and_, select, update

from services.agent.models import DeliveryRow, DeliveryState, NotificationChannelRow, NotificationDelivery
from services.agent.notifications.channels import CHANNEL, Channel
from services.agent.notifications.senders import DeliveryFailed, Notification, Senders
from services.agent.notifications.store import CHANNELS
from services.kit.db import Database, Tx
from services.kit.names import ResourceName
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Repository
from services.kit.sealing import Sealer

log = logging.getLogger(__name__)

DELIVERIES = Repository(NotificationDelivery, DeliveryRow, order=NEWEST_FIRST)
DELIVERY = ResourceName("tenants/{tenant}/notificationChannels/{notification_channel}/deliveries/{delivery}")
#: Attempts in all before a delivery fails for good.
MAX_ATTEMPTS = 8
#: The first retry's wait; each further one doubles, up to :data:`MAX_BACKOFF_SECONDS`.
BASE_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 300.0
#: How long a claimed delivery is left to the replica attempting it.
CLAIM_SECONDS = 120.0
#: Deliveries one relay pass claims.
BATCH = 20
_D = DELIVERIES.table


def backoff_seconds(attempts: int) -> float:
    """Returns the wait after the ``attempts``-th failed attempt: 2 s, 4 s, 8 s... at most 300 s."""
    return min(BASE_BACKOFF_SECONDS * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for one attempt, with its channel (None: the channel is gone)."""

    delivery: DeliveryRow
    channel: NotificationChannelRow | None


def create_delivery(tx: Tx, delivery: DeliveryRow) -> tuple[DeliveryRow, bool] | None:
    """Inserts a delivery of an existing channel, or finds an earlier request's by ``request_id``.

    Returns:
        The delivery and whether it is new; None when the channel does not exist.
    """
    if CHANNELS.get(tx, delivery.channel_id) is None:
        return None
    created = DELIVERIES.create(tx, delivery)
    assert created is not None, "delivery IDs are random"
    return created, created is delivery


def get_delivery(tx: Tx, channel_id: str, delivery_id: str) -> DeliveryRow | None:
    """Returns the tenant's delivery, or None."""
    return DELIVERIES.get(tx, channel_id, delivery_id)


def list_deliveries(tx: Tx, channel_id: str, page: Page) -> Listing[DeliveryRow]:
    """Returns a page of a channel's deliveries, newest first."""
    return DELIVERIES.list_page(tx, page, _D.c.channel_id == channel_id)


def _claim_due(tx: Tx, now: dt.datetime, limit: int) -> list[Claimed]:
    """Claims up to ``limit`` due pending deliveries of every tenant (a system transaction)."""
    due = tx.execute(
        select(*_D.c)
        .where(_D.c.state == DeliveryState.PENDING, _D.c.next_attempt_time <= now)
        .order_by(_D.c.next_attempt_time)
        .limit(limit)
    ).all()
    claimed = []
    until = now + dt.timedelta(seconds=CLAIM_SECONDS)
    for row in DELIVERIES.records(due):
        won = tx.execute(
            update(_D)
            .where(
                and_(
                    _D.c.tenant_id == row.tenant_id,
                    _D.c.channel_id == row.channel_id,
                    _D.c.id == row.id,
                    _D.c.next_attempt_time == row.next_attempt_time,
                )
            )
            .values(next_attempt_time=until)
        ).rowcount
        if won:
            tx.changed = True
            channel_table = CHANNELS.table
            found = tx.execute(
                select(*channel_table.c).where(
                    channel_table.c.tenant_id == row.tenant_id, channel_table.c.id == row.channel_id
                )
            ).first()
            channel = None if found is None else CHANNELS.records([found])[0]
            claimed.append(Claimed(replace(row, next_attempt_time=until), channel))
    return claimed


def _record(tx: Tx, delivery: DeliveryRow, outcome: DeliveryFailed | None, now: dt.datetime) -> DeliveryRow:
    """Records an attempt's outcome on the delivery (a system transaction: the relay spans tenants)."""
    attempts = delivery.attempts + 1
    if outcome is None:
        values = {
            "state": DeliveryState.SUCCEEDED,
            "next_attempt_time": None,
            "end_time": now,
            "last_error": "",
        }
    elif not outcome.retry or attempts >= MAX_ATTEMPTS:
        values = {"state": DeliveryState.FAILED, "next_attempt_time": None, "end_time": now}
        values["last_error"] = str(outcome)
    else:
        due = now + dt.timedelta(seconds=backoff_seconds(attempts))
        values = {"state": DeliveryState.PENDING, "next_attempt_time": due, "last_error": str(outcome)}
    key = (
        _D.c.tenant_id == delivery.tenant_id,
        _D.c.channel_id == delivery.channel_id,
        _D.c.id == delivery.id,
    )
    row = tx.execute(update(_D).where(*key).values(attempts=attempts, **values).returning(*_D.c)).first()
    tx.changed = True
    assert row is not None, "deliveries are never deleted"
    return DELIVERIES.records([row])[0]


class Notifier:
    """Sends notifications and relays the deliveries that wait for another attempt.

    Args:
        db: The agent database.
        sealer: Opens channels' secrets.
        senders: Makes each attempt.
        clock: The time deliveries are scheduled in (tests move it).
    """

    def __init__(
        self, db: Database, sealer: Sealer, senders: Senders, clock: Callable[[], dt.datetime]
    ) -> None:
        self._db = db
        self._sealer = sealer
        self._senders = senders
        self.clock = clock

    def claim_until(self) -> dt.datetime:
        """Returns when a claim made now expires (a new delivery is claimed by its sender)."""
        return self.clock() + dt.timedelta(seconds=CLAIM_SECONDS)

    async def attempt(self, delivery: DeliveryRow, channel: NotificationChannelRow | None) -> DeliveryRow:
        """Makes one attempt of a claimed delivery and records its outcome.

        Returns:
            The delivery as recorded.
        """
        outcome: DeliveryFailed | None
        if channel is None:
            outcome = DeliveryFailed("the channel was deleted", retry=False)
        else:
            try:
                opened = Channel.of(channel, self._sealer)
            except Exception:  # a key change: the secrets do not open
                log.warning("the stored secrets of channel %s do not open", channel.id)
                opened = None
            name = DELIVERY.format(delivery.tenant_id, delivery.channel_id, delivery.id)
            notification = Notification(
                name, delivery.id, delivery.subject, delivery.message, delivery.create_time
            )
            try:
                if opened is None:
                    raise DeliveryFailed(
                        "the channel's stored secrets cannot be read; set them again", retry=False
                    )
                await self._senders.deliver(opened, notification)
                outcome = None
            except DeliveryFailed as failed:
                outcome = failed
                log.info("delivery %s failed (attempt %d): %s", name, delivery.attempts + 1, failed)
        return await self._db.system(_record, delivery, outcome, self.clock())

    async def relay_once(self) -> int:
        """Claims the due deliveries of every tenant and attempts them, all at once.

        Returns:
            How many were attempted.
        """
        claimed: Sequence[Claimed] = await self._db.system(_claim_due, self.clock(), BATCH)
        await asyncio.gather(*(self.attempt(c.delivery, c.channel) for c in claimed))
        return len(claimed)


def channel_name(delivery: DeliveryRow) -> str:
    """Returns the resource name of a delivery's channel."""
    return CHANNEL.format(delivery.tenant_id, delivery.channel_id)
