"""The signing keys, held parsed in memory: tokens are signed and the JWKS served without a database read.

Every auth replica loads the unexpired keys at start-up and again every
``refresh_seconds``, after its own rotation, and whenever it finds no key able
to sign. A key made by another replica is therefore published here within one
refresh interval; since a new key is published ``publish_delay`` (25 minutes by
default) before it signs, and the refresh interval must be shorter
(:class:`~services.auth.server.AuthSettings`), every replica signs with the new
key from its activation on. The private keys are parsed once per key, not once
per token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth import store, tokens
from services.auth.models import SigningKeyRow
from services.kit.db import Database, Tx
from services.kit.timestamps import as_utc, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signer:
    """The key that signs now and its parsed private key."""

    key: SigningKeyRow
    private_key: Ed25519PrivateKey


def _ensure(tx: Tx, now: dt.datetime) -> list[SigningKeyRow]:
    """The unexpired keys, after creating a first one, active at once, when none can sign."""
    keys = store.unexpired_keys(tx, now)
    if tokens.signing_key(keys, now) is None:
        first = tokens.new_signing_key(now)
        store.add_signing_key(tx, first)
        keys.append(first)
    return keys


def _rotate(
    tx: Tx, now: dt.datetime, publish_delay: dt.timedelta
) -> tuple[SigningKeyRow, list[SigningKeyRow]]:
    keys = store.unexpired_keys(tx, now, lock=True)
    new, retired = tokens.rotate(keys, now, publish_delay)
    for key in retired:
        store.retire_signing_key(tx, key)
    store.add_signing_key(tx, new)
    return new, retired


class KeyRing:
    """This replica's signing keys.

    Args:
        db: The auth database (the signing keys are system rows, of no tenant).
        publish_delay: How long a new key is in the JWKS before it signs.
        refresh_seconds: How often keys made by other replicas are looked for.
    """

    def __init__(self, db: Database, publish_delay: dt.timedelta, refresh_seconds: float) -> None:
        self._db = db
        self._publish_delay = publish_delay
        self._refresh_seconds = refresh_seconds
        self._keys: list[SigningKeyRow] = []
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._refresher: asyncio.Task[None] | None = None

    def _install(self, keys: list[SigningKeyRow]) -> None:
        self._private = {k.kid: self._private.get(k.kid) or tokens.private_key_of(k) for k in keys}
        self._keys = keys

    async def start(self) -> None:
        """Creates the first key when none can sign, loads the keys, and refreshes them in the background."""
        self._install(await self._db.system(_ensure, utcnow()))
        self._refresher = asyncio.create_task(self._refresh_forever(), name="signing-key-refresh")

    async def stop(self) -> None:
        """Stops refreshing."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)

    async def refresh(self) -> None:
        """Reloads the unexpired keys from the database."""
        self._install(await self._db.system(store.unexpired_keys, utcnow()))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database may be briefly away; the keys held stay valid
                log.warning("signing key refresh failed: %s", error)

    async def signer(self) -> Signer:
        """Returns the key that signs now (reloading, or creating a first key, when none does)."""
        now = utcnow()
        key = tokens.signing_key(self._keys, now)
        if key is None:
            self._install(await self._db.system(_ensure, now))
            key = tokens.signing_key(self._keys, now)
            assert key is not None, "_ensure makes a key that signs now"
        return Signer(key, self._private[key.kid])

    def published(self) -> list[dict[str, str]]:
        """Returns the public JWKs published now (created, not expired), newest first."""
        now = utcnow()
        keys = [
            k
            for k in self._keys
            if as_utc(k.create_time) <= now and (k.expire_time is None or as_utc(k.expire_time) > now)
        ]
        keys.sort(key=lambda k: as_utc(k.create_time), reverse=True)
        return [dict(k.public_jwk) for k in keys]

    async def fresh_jwks(self) -> dict[str, list[dict[str, str]]]:
        """Returns the JWKS after reloading the keys.

        For this service's own token verifier, which asks only when it meets an unknown
        ``kid`` or its copy is old.
        """
        await self.refresh()
        return {"keys": self.published()}

    async def rotate(self) -> tuple[SigningKeyRow, SigningKeyRow | None]:
        """Rotates the signing key (see :func:`services.auth.tokens.rotate`).

        Returns:
            The new key and the key it replaces (None when there was none).
        """
        new, retired = await self._db.system(_rotate, utcnow(), self._publish_delay)
        await self.refresh()
        return new, retired[0] if retired else None

    async def rotate_if_older_than(self, age: dt.timedelta) -> None:
        """Rotates when the newest key was created more than ``age`` ago (the schedule)."""
        await self.refresh()
        newest = max((as_utc(k.create_time) for k in self._keys), default=None)
        if newest is None or utcnow() - newest >= age:
            await self.rotate()
