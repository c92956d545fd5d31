"""Signing keys and JWT issuance (RFC 7519, EdDSA per RFC 8037)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import secrets
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.models import SigningKeyRow
from services.kit.timestamps import as_utc

TOKEN_LIFETIME = dt.timedelta(minutes=15)
# Tolerated clock difference between issuer and verifiers (RFC 7519 section 4.1.4 "leeway").
CLOCK_SKEW = dt.timedelta(minutes=1)
KEY_PREFIX = "oak_"
SERVICE_ACCOUNT_PREFIX = "osa_"


def new_signing_key(now: dt.datetime, activate_time: dt.datetime | None = None) -> SigningKeyRow:
    """Returns a fresh Ed25519 key, published from ``now``, signing from ``activate_time`` (default ``now``).

    Its ``kid`` is the RFC 7638 thumbprint of the public key.
    """
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    thumbprint_input = f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(thumbprint_input).digest()).decode().rstrip("=")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}
    return SigningKeyRow(
        kid=kid,
        private_pem=pem,
        public_jwk=jwk,
        create_time=now,
        activate_time=activate_time or now,
        retire_time=None,
        expire_time=None,
    )


def signing_key(keys: list[SigningKeyRow], now: dt.datetime) -> SigningKeyRow | None:
    """Returns the key that signs at ``now``: the newest activated, unretired key."""
    candidates = [
        k
        for k in keys
        if as_utc(k.activate_time) <= now and (k.retire_time is None or as_utc(k.retire_time) > now)
    ]
    return max(candidates, key=lambda k: as_utc(k.activate_time), default=None)


def rotate(
    keys: list[SigningKeyRow], now: dt.datetime, publish_delay: dt.timedelta
) -> tuple[SigningKeyRow, list[SigningKeyRow]]:
    """Makes the next signing key and schedules the current ones' end.

    The new key is published at once and signs from ``now + publish_delay``, so
    every verifier that caches the JWKS for less than ``publish_delay`` knows it
    before it signs anything. The keys it replaces stop signing then and stay
    published for one token lifetime plus clock skew, so every token they signed
    can still be verified until it expires.

    Args:
        keys: The unexpired keys.
        now: The current time.
        publish_delay: How long the new key is published before it signs.

    Returns:
        The new key, and the replaced keys with their ``retire_time`` and ``expire_time``
        set (the one that signed last first).
    """
    new = new_signing_key(now, now + publish_delay)
    current = sorted(
        (k for k in keys if k.retire_time is None), key=lambda k: as_utc(k.activate_time), reverse=True
    )
    retired = [
        dataclasses.replace(
            key,
            retire_time=new.activate_time,
            expire_time=new.activate_time + TOKEN_LIFETIME + CLOCK_SKEW,
        )
        for key in current
    ]
    return new, retired


def sign(
    key: SigningKeyRow,
    private_key: Ed25519PrivateKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    tenant: str,
    roles: list[str],
    now: dt.datetime,
    not_after: dt.datetime | None = None,
    industry: str = "",
) -> tuple[str, int]:
    """Signs an access token for at most :data:`TOKEN_LIFETIME`.

    Args:
        key: The signing key; its ``kid`` goes in the header (RFC 7515 section 4.1.4).
        private_key: Its private key, parsed (:func:`private_key_of`).
        issuer: ``iss``.
        audience: ``aud``.
        subject: ``sub``, the name of the user, service account or API key.
        tenant: ``tenant``, the tenant ID every call is scoped to.
        roles: ``roles`` (and ``scope``, space-separated).
        now: ``iat``.
        not_after: When the credential that asked for the token expires; the token
            expires then at the latest, so it never outlives its credential.
        industry: ``industry``, the tenant's industry (its resource's field), so services
            can tailor what they offer (the agent templates first) without asking auth;
            left out when empty. Like the roles, it is as of when the token was issued.

    Returns:
        The compact JWT and its lifetime in seconds.
    """
    expires = now + TOKEN_LIFETIME if not_after is None else min(now + TOKEN_LIFETIME, as_utc(not_after))
    lifetime = max(int((expires - now).total_seconds()), 0)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "tenant": tenant,
        "roles": roles,
        "scope": " ".join(roles),
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + lifetime,
        "jti": str(uuid.uuid4()),
    }
    if industry:
        claims["industry"] = industry
    token = jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": key.kid})
    return token, lifetime


def private_key_of(key: SigningKeyRow) -> Ed25519PrivateKey:
    """Returns the parsed private key of a signing key.

    Raises:
        TypeError: The stored key is not Ed25519.
    """
    private = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise TypeError(f"signing key {key.kid} is not an Ed25519 key")
    return private


def new_api_key_secret(key_id: str) -> str:
    """The secret handed to the user: ``oak_<key id>.<256 random bits>``."""
    return f"{KEY_PREFIX}{key_id}.{secrets.token_urlsafe(32)}"


def new_service_account_secret() -> str:
    """A service account's client secret: ``osa_<256 random bits>``."""
    return f"{SERVICE_ACCOUNT_PREFIX}{secrets.token_urlsafe(32)}"


def split_api_key_secret(secret: str) -> str | None:
    """The key ID inside an API key secret, or None when it is not shaped like one."""
    if not secret.startswith(KEY_PREFIX) or "." not in secret:
        return None
    return secret[len(KEY_PREFIX) :].split(".", 1)[0] or None


def secret_sha256(secret: str) -> str:
    """SHA-256 of a secret. Secrets carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, stored_sha256: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return secrets.compare_digest(secret_sha256(secret), stored_sha256)
