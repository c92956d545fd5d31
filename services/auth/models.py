"""Tables of the auth service and the records its store reads and writes.

Each ORM model is the schema of its table (Alembic compares migrations with it);
the frozen dataclass after it is the row as the service handles it, its fields
the table's columns in order (checked by :class:`~services.kit.repository.Repository`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import JSON, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.audit import outbox_table
from services.kit.db import new_metadata


class Base(DeclarativeBase):
    """Declarative base of this service's tables (its own MetaData, one Alembic lineage)."""

    metadata = new_metadata()


# Audit events of this service's calls, committed with their changes and relayed to auth.
AUDIT_OUTBOX = outbox_table(Base.metadata)


class Tenant(Base):
    """A tenant; its ``id`` is the last segment of ``tenants/{tenant}``."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    industry: Mapped[str] = mapped_column(String(100), default="")
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class TenantRow:
    """A tenant, as stored."""

    id: str
    display_name: str
    industry: str
    create_time: dt.datetime


class ApiKey(Base):
    """An API key; only the SHA-256 of its secret is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    roles: Mapped[list[str]] = mapped_column(JSON)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_use_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key, as stored (the secret's hash only)."""

    id: str
    tenant_id: str
    display_name: str
    roles: list[str]
    secret_sha256: str
    request_id: str | None
    create_time: dt.datetime
    expire_time: dt.datetime | None
    last_use_time: dt.datetime | None


class User(Base):
    """A person of a tenant; only an Argon2id hash of the password is kept."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    roles: Mapped[list[str]] = mapped_column(JSON)
    password_hash: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user, as stored (the password's hash only)."""

    tenant_id: str
    id: str
    email: str
    display_name: str
    roles: list[str]
    password_hash: str
    create_time: dt.datetime


class ServiceAccount(Base):
    """A non-human principal; only the SHA-256 of its client secret is kept."""

    __tablename__ = "service_accounts"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    roles: Mapped[list[str]] = mapped_column(JSON)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class ServiceAccountRow:
    """A service account, as stored (the client secret's hash only)."""

    tenant_id: str
    id: str
    display_name: str
    roles: list[str]
    secret_sha256: str
    create_time: dt.datetime


class AuditEvent(Base):
    """One audited call, relayed from the outbox of the service that handled it."""

    __tablename__ = "audit_events"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    subject: Mapped[str] = mapped_column(String(300), index=True)
    principal_kind: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(200))
    resource: Mapped[str] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(40))
    service: Mapped[str] = mapped_column(String(40))


@dataclass(frozen=True, slots=True)
class AuditEventRow:
    """An audit event, as stored."""

    tenant_id: str
    id: str
    time: dt.datetime
    subject: str
    principal_kind: str
    method: str
    resource: str
    outcome: str
    service: str


class SigningKey(Base):
    """An Ed25519 key that signs tokens.

    Lifecycle (all UTC): published in the JWKS from ``create_time``; signs from
    ``activate_time`` until ``retire_time`` (None: still current); published
    until ``expire_time`` (None: no end yet), which is at least one token
    lifetime after ``retire_time``.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    activate_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    retire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class SigningKeyRow:
    """A signing key, as stored (see :class:`SigningKey` for its lifecycle)."""

    kid: str
    private_pem: str
    public_jwk: dict[str, str]
    create_time: dt.datetime
    activate_time: dt.datetime
    retire_time: dt.datetime | None
    expire_time: dt.datetime | None
