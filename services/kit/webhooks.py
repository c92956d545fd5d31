"""Standard Webhooks 1.0: signing outbound deliveries and verifying inbound ones.

A delivery carries three headers,

* ``webhook-id``: the delivery's ID, the same on every retry of it;
* ``webhook-timestamp``: integer seconds since the Unix epoch;
* ``webhook-signature``: space-separated ``v1,<base64>`` signatures, each the
  HMAC-SHA256 (RFC 2104) of ``{id}.{timestamp}.{body}`` keyed by the secret's bytes.

The secret is ``whsec_`` and the base64 of its bytes. Signing and verifying are the
``standardwebhooks`` library's (``Webhook.sign``, ``Webhook.verify`` with a
constant-time comparison); this module is the one place the mesh uses it: the
workflow service verifies deliveries to its triggers, the agent service signs the
notifications it sends to webhook channels.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"
#: Bytes of a secret :func:`new_secret` makes.
SECRET_BYTES = 32
#: The bytes a secret a tenant brings may have (Standard Webhooks recommends 24-64).
SECRET_BYTES_RANGE = range(24, 65)
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SignatureMismatch(Exception):
    """No ``v1`` signature of a delivery matches its body, or one is malformed."""


def new_secret() -> str:
    """Returns a signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_problem(secret: str) -> str | None:
    """Returns what is wrong with a secret a tenant brings, or None: ``whsec_`` and base64 of 24-64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX!r}"
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX!r} and base64"
    if len(raw) not in SECRET_BYTES_RANGE:
        return f"must hold 24-64 bytes, not {len(raw)}"
    return None


def signed_headers(secret: str, delivery_id: str, timestamp: int, body: str) -> dict[str, str]:
    """Returns the three Standard Webhooks headers of a delivery.

    Args:
        secret: ``whsec_...``.
        delivery_id: The delivery's ID (the same on each retry).
        timestamp: Seconds since the Unix epoch of this attempt.
        body: The body exactly as sent.
    """
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    signature = Webhook(secret).sign(delivery_id, when, body)
    return {"webhook-id": delivery_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def verify(secret: str, body: str, headers: Mapping[str, str]) -> None:
    """Checks a delivery's signature (the timestamp's window included, 5 minutes).

    Raises:
        SignatureMismatch: No ``v1`` signature matches, or one is malformed.
    """
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except (WebhookVerificationError, ValueError):  # ValueError: a signature without "," or bad base64
        raise SignatureMismatch() from None
