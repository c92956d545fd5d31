"""List pagination (AIP-158): page sizes and opaque page tokens.

A token encodes the offset of the next page and a fingerprint of the request
it belongs to, so a token reused with other parameters is rejected instead of
returning a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import TypeVar

from services.kit.errors import invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    """Where a list call starts and how many rows it returns."""

    offset: int
    size: int
    fingerprint: str

    @property
    def limit(self) -> int:
        """Rows a store should fetch: one more than the page, to tell whether another page exists."""
        return self.size + 1

    def split(self, rows: list[T]) -> tuple[list[T], str]:
        """The page's rows (fetched with :attr:`limit`) and the ``next_page_token``."""
        return rows[: self.size], self.next_token(len(rows))

    def next_token(self, returned: int) -> str:
        """The ``next_page_token`` after returning ``returned`` rows; empty at the end.

        The store fetches ``size + 1`` rows to know whether more exist.
        """
        if returned <= self.size:
            return ""
        raw = json.dumps({"o": self.offset + self.size, "f": self.fingerprint}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_of(page_size: int, page_token: str, *request_keys: str) -> Page:
    """Validates ``page_size``/``page_token`` of a list request.

    Args:
        page_size: Requested size; 0 means the default, above the maximum is clamped (AIP-158).
        page_token: Empty, or a ``next_page_token`` from the same kind of request.
        request_keys: The request's other parameters (parent, filter).

    Raises:
        InvalidArgument: Negative size, or a token that is malformed or for another request.
    """
    if page_size < 0:
        raise invalid("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = hashlib.sha256("\x00".join(request_keys).encode()).hexdigest()[:16]
    if not page_token:
        return Page(0, size, fingerprint)
    try:
        data = json.loads(base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)))
        offset = int(data["o"])
        token_fingerprint = str(data["f"])
    except (ValueError, KeyError, TypeError):
        raise invalid("page_token", "is not a page token of this API") from None
    if token_fingerprint != fingerprint or offset < 0:
        raise invalid("page_token", "belongs to a different request")
    return Page(offset, size, fingerprint)
