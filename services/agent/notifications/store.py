"""SQL of notification channels, through the kit's repository; every query filters by the tenant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.agent.models import NotificationChannel, NotificationChannelRow
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Repository

CHANNELS = Repository(NotificationChannel, NotificationChannelRow, order=NEWEST_FIRST)


def create_channel(tx: Tx, channel: NotificationChannelRow) -> NotificationChannelRow | None:
    """Inserts a channel, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        The channel; None when its ID is taken (nothing is written then).
    """
    return CHANNELS.create(tx, channel)


def get_channel(tx: Tx, channel_id: str) -> NotificationChannelRow | None:
    """Returns the tenant's channel, or None."""
    return CHANNELS.get(tx, channel_id)


def list_channels(tx: Tx, page: Page) -> Listing[NotificationChannelRow]:
    """Returns a page of the tenant's channels, newest first, and whether more follow."""
    return CHANNELS.list_page(tx, page)


def channels_for_tools(tx: Tx, limit: int) -> list[NotificationChannelRow]:
    """Returns up to ``limit`` of the tenant's channels, newest first (what ``send_notification`` offers)."""
    return CHANNELS.find_all(tx, limit=limit)


def update_channel(tx: Tx, channel_id: str, values: Mapping[str, Any]) -> NotificationChannelRow | None:
    """Sets ``values`` (column name to value) on the tenant's channel; None when there is none."""
    return CHANNELS.update(tx, (channel_id,), values)


def delete_channel(tx: Tx, channel_id: str) -> bool:
    """Deletes the tenant's channel; False when there was none. Its deliveries stay."""
    return CHANNELS.delete(tx, channel_id)
