"""List pagination (AIP-158): page sizes and opaque page tokens.

Pages are keyset pages: a token carries the sort key of the last item of the
page before (not an offset), so a page never repeats or skips an item when
items are added or removed in between, and reading page 1,000 costs what
reading page 1 does. A token also carries a fingerprint of the request it
belongs to (parent, filters), so a token reused with other parameters is
rejected instead of returning a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.kit.errors import invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


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
        raw = json.dumps({"a": list(key), "f": self.fingerprint}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


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
    fingerprint = hashlib.sha256("\x00".join(request_keys).encode()).hexdigest()[:16]
    if not page_token:
        return Page(size, None, fingerprint)
    try:
        data = json.loads(base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)))
        after = tuple(data["a"])
        token_fingerprint = data["f"]
    except (ValueError, KeyError, TypeError):
        raise invalid("page_token", "is not a page token of this API") from None
    if token_fingerprint != fingerprint:
        raise invalid("page_token", "belongs to a different request")
    return Page(size, after, fingerprint)
