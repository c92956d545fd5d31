"""Encryption at rest of secrets a service stores (an MCP server's headers).

AES-256-GCM (NIST SP 800-38D) from the ``cryptography`` library, a fresh 96-bit random
nonce per value, and associated data naming what the value belongs to (a tenant's
resource name): a sealed value copied onto another row, or another tenant's, does not
open. A sealed value is ``version (1 byte) || nonce (12 bytes) || ciphertext || tag``.

The key comes from ``ORCHESTRALL_ENCRYPTION_KEY`` (:class:`services.kit.config.MeshSettings`),
64 hexadecimal characters (32 bytes), the same for every replica; unset, a random key
is used, good for this process only (values sealed before a restart no longer open).
"""

from __future__ import annotations

import logging
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32


class SealError(Exception):
    """A sealed value does not open: another key, other associated data, or tampered bytes."""


class Sealer:
    """Seals and opens values with one AES-256-GCM key.

    Args:
        key: 32 bytes; None makes a random key, valid in this process only.

    Raises:
        ValueError: A key of another length.
    """

    def __init__(self, key: bytes | None) -> None:
        if key is None:
            log.warning("no encryption key configured: stored secrets open in this process only")
            key = secrets.token_bytes(KEY_BYTES)
        if len(key) != KEY_BYTES:
            raise ValueError(f"the encryption key must have {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_hex(cls, text: str | None) -> Sealer:
        """Returns a sealer with the key written as 64 hexadecimal characters; None for a random one.

        Raises:
            ValueError: Not 64 hexadecimal characters.
        """
        return cls(None if text is None else bytes.fromhex(text))

    def seal(self, plaintext: bytes, associated: str) -> bytes:
        """Returns ``plaintext`` encrypted and authenticated together with ``associated``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated.encode())

    def open(self, sealed: bytes, associated: str) -> bytes:
        """Returns the plaintext of a value :meth:`seal` made with the same ``associated``.

        Raises:
            SealError: The value does not open with this key and ``associated``.
        """
        if sealed[:1] != VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SealError("not a sealed value of a known version")
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated.encode())
        except InvalidTag:
            raise SealError("the sealed value does not open with this key for this resource") from None
