"""Errors of the auth service. Token endpoint errors carry the RFC 6749 section 5.2 code as reason."""

from __future__ import annotations

from services.kit.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated, invalid


def tenant_exists(name: str) -> AlreadyExists:
    """A tenant with that ID exists."""
    return AlreadyExists("TENANT_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def already_exists(reason: str, name: str) -> AlreadyExists:
    """A principal with that ID (or email) exists in the tenant."""
    return AlreadyExists(reason, f"{name} already exists", metadata={"name": name})


def tenant_not_found(name: str) -> NotFound:
    """No such tenant."""
    return NotFound("TENANT_NOT_FOUND", f"{name} not found", metadata={"name": name})


def not_found(reason: str, name: str) -> NotFound:
    """No such key, user or service account in the caller's tenant."""
    return NotFound(reason, f"{name} not found", metadata={"name": name})


def invalid_client() -> Unauthenticated:
    """``invalid_client``: unknown, revoked, expired or wrong secret."""
    return Unauthenticated("INVALID_CLIENT", "client authentication failed")


def invalid_grant() -> InvalidArgument:
    """``invalid_grant``: the user's credentials are wrong (same answer for unknown users)."""
    return invalid("password", "the username or password is wrong", reason="INVALID_GRANT")


def unsupported_grant_type(grant_type: str) -> InvalidArgument:
    """``unsupported_grant_type``."""
    return invalid(
        "grant_type",
        f"{grant_type!r} is not supported; use client_credentials or password",
        reason="UNSUPPORTED_GRANT_TYPE",
    )
