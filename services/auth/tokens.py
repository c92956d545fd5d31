"""Signing keys and JWT issuance (RFC 7519, EdDSA per RFC 8037)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.models import SigningKey

TOKEN_LIFETIME = dt.timedelta(minutes=15)
KEY_PREFIX = "oak_"


def new_signing_key(now: dt.datetime) -> SigningKey:
    """A fresh Ed25519 key; its ``kid`` is the RFC 7638 thumbprint of the public key."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    thumbprint_input = f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(thumbprint_input).digest()).decode().rstrip("=")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}
    return SigningKey(kid=kid, private_pem=pem, public_jwk=jwk, create_time=now, retire_time=None)


def sign(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    tenant: str,
    roles: list[str],
    now: dt.datetime,
) -> tuple[str, int]:
    """Signs an access token.

    Returns:
        The compact JWT and its lifetime in seconds.
    """
    lifetime = int(TOKEN_LIFETIME.total_seconds())
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
    token = jwt.encode(claims, key.private_pem, algorithm="EdDSA", headers={"kid": key.kid})
    return token, lifetime


def new_api_key_secret(key_id: str) -> str:
    """The secret handed to the user: ``oak_<key id>.<256 random bits>``."""
    return f"{KEY_PREFIX}{key_id}.{secrets.token_urlsafe(32)}"


def split_api_key_secret(secret: str) -> str | None:
    """The key ID inside a secret, or None when it is not shaped like one."""
    if not secret.startswith(KEY_PREFIX) or "." not in secret:
        return None
    return secret[len(KEY_PREFIX) :].split(".", 1)[0] or None


def secret_sha256(secret: str) -> str:
    """SHA-256 of a secret. Secrets carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, stored_sha256: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return secrets.compare_digest(secret_sha256(secret), stored_sha256)
