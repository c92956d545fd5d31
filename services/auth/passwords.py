"""Password hashing with Argon2id (RFC 9106), via argon2-cffi's recommended parameters."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256
_HASHER = PasswordHasher()
# Verified when the user does not exist, so a wrong email costs as much time as
# a wrong password (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash("orchestrall-no-such-user")


def hash_password(password: str) -> str:
    """The encoded Argon2id hash (parameters and salt included)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; None (no such user) never matches."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
