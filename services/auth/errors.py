"""Errors of the auth service."""

from __future__ import annotations

from services.kit.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated, invalid


def tenant_exists(name: str) -> AlreadyExists:
    """A tenant with that ID exists."""
    return AlreadyExists("TENANT_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def tenant_not_found(name: str) -> NotFound:
    """No such tenant."""
    return NotFound("TENANT_NOT_FOUND", f"{name} not found", metadata={"name": name})


def api_key_not_found(name: str) -> NotFound:
    """No such API key in the caller's tenant."""
    return NotFound("API_KEY_NOT_FOUND", f"{name} not found", metadata={"name": name})


def invalid_client() -> Unauthenticated:
    """RFC 6749 section 5.2 ``invalid_client``: unknown, revoked or wrong secret."""
    return Unauthenticated("INVALID_CLIENT", "client authentication failed")


def unsupported_grant_type(grant_type: str) -> InvalidArgument:
    """RFC 6749 section 5.2 ``unsupported_grant_type``."""
    return invalid(
        "grant_type",
        f"{grant_type!r} is not supported; use client_credentials",
        reason="UNSUPPORTED_GRANT_TYPE",
    )
