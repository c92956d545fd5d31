"""List pagination (AIP-158): page sizes and opaque, tamper-proof page tokens.

Pages are keyset pages: a token carries the sort key of the last item of the
page before (not an offset), so a page never repeats or skips an item when
items are added or removed in between, and reading page 1,000 costs what
reading page 1 does. A token also carries a fingerprint of the request it
belongs to (the RPC, its parent and filters), the time it was made, and an
HMAC-SHA256 over all of it (RFC 2104) with the deployment's page token key: a
forged or altered token, one for another list or request, or one older than
:data:`TOKEN_LIFETIME_SECONDS` is refused with INVALID_ARGUMENT.

A page is bounded in bytes as well as in items (:data:`MAX_PAGE_BYTES`): a
list of resources that are each as large as their contract allows still
answers, with fewer items and a ``next_page_token`` for the rest, instead of a
response larger than the gateway transcodes or a client accepts.

The key is set once per process (:func:`use_key`, at start-up from the
settings); every replica of a deployment must share it, or a token made by one
is refused by another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from services.kit.calls import CURRENT_RPC
from services.kit.errors import invalid

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: How long a page token stays usable, in seconds (a day: a client paging through a list
#: finishes long before; a token found in a log a week later is worth nothing).
TOKEN_LIFETIME_SECONDS = 86_400
#: The most a page's items may take, serialized, in bytes. A page holds at least one item
#: whatever its size; the gateway transcodes responses up to
#: ``gateway.envoy.render.MAX_RESPONSE_BYTES``, which leaves room for the largest resource.
MAX_PAGE_BYTES = 1024 * 1024
_MAC_BYTES = 16

R = TypeVar("R")
M = TypeVar("M", bound=Message)

_key = secrets.token_bytes(32)


def use_key(key: bytes | None) -> None:
    """Sets the key page tokens are signed with; None keeps a random one, good for this process only.

    Raises:
        ValueError: A key shorter than 16 bytes.
    """
    global _key
    if key is None:
        log.warning("no page token key configured: page tokens are valid in this process only")
        return
    if len(key) < 16:
        raise ValueError("the page token key must have at least 16 bytes")
    _key = key


def _mac(payload: bytes) -> bytes:
    return hmac.new(_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Page:
    """Which page a list call asks for.

    Attributes:
        size: How many items the page holds at most.
        after: The sort key (JSON values) of the last item of the previous page;
            None for the first page.
        fingerprint: What the request's other parameters hash to.
    """

    size: int
    after: tuple[Any, ...] | None
    fingerprint: str

    def token_after(self, key: Sequence[Any]) -> str:
        """Returns the ``next_page_token`` of a page whose last item has sort key ``key`` (JSON values)."""
        payload = json.dumps(
            {"a": list(key), "f": self.fingerprint, "t": int(time.time())}, separators=(",", ":")
        ).encode()
        return f"{_b64(payload)}.{_b64(_mac(payload))}"


@dataclass(frozen=True)
class Listing(Generic[R]):
    """What a list query read: up to one page of records, and whether more follow.

    Attributes:
        records: The records, in the list's order; at most the page's size.
        page: The page that was asked for.
        more: Whether items follow the last record.
        sort_key: The list order's sort key of a record (JSON values).
    """

    records: list[R]
    page: Page
    more: bool
    sort_key: Callable[[R], Sequence[Any]]

    def messages(self, to_message: Callable[[R], M]) -> tuple[list[M], str]:
        """Returns the records as messages, cut where they would pass :data:`MAX_PAGE_BYTES`.

        Returns:
            The messages (at least one when there are records) and the ``next_page_token``,
            which continues after the last message returned; empty on the last page.
        """
        messages: list[M] = []
        size = 0
        for record in self.records:
            message = to_message(record)
            size += message.ByteSize() + 6  # the field's tag and length prefix
            if messages and size > MAX_PAGE_BYTES:
                return messages, self.page.token_after(self.sort_key(self.records[len(messages) - 1]))
            messages.append(message)
        token = self.page.token_after(self.sort_key(self.records[-1])) if self.more else ""
        return messages, token


def page_of(page_size: int, page_token: str, *request_keys: str) -> Page:
    """Validates ``page_size`` and ``page_token`` of a list request.

    Args:
        page_size: Requested size; 0 means the default, above the maximum is clamped (AIP-158).
        page_token: Empty, or a ``next_page_token`` from the same kind of request.
        request_keys: The request's other parameters (parent, filter).

    Returns:
        The page.

    Raises:
        InvalidArgument: Negative size, or a token that is malformed or for another request.
    """
    if page_size < 0:
        raise invalid("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    keys = "\x00".join((CURRENT_RPC.get(), *request_keys))
    fingerprint = hashlib.sha256(keys.encode()).hexdigest()[:16]
    if not page_token:
        return Page(size, None, fingerprint)
    try:
        encoded, mac = page_token.split(".")
        payload = _unb64(encoded)
        if not hmac.compare_digest(_unb64(mac), _mac(payload)):
            raise ValueError("not signed with this deployment's key")
        data = json.loads(payload)
        after, token_fingerprint, made = tuple(data["a"]), data["f"], int(data["t"])
    except (ValueError, KeyError, TypeError):
        raise invalid("page_token", "is not a page token of this API") from None
    if token_fingerprint != fingerprint:
        raise invalid("page_token", "belongs to a different request")
    if not 0 <= time.time() - made <= TOKEN_LIFETIME_SECONDS:
        raise invalid("page_token", "has expired; list again from the first page")
    return Page(size, after, fingerprint)
