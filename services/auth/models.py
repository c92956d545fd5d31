"""Tables of the auth service."""

from __future__ import annotations

import datetime as dt

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


class ServiceAccount(Base):
    """A non-human principal; only the SHA-256 of its client secret is kept."""

    __tablename__ = "service_accounts"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    roles: Mapped[list[str]] = mapped_column(JSON)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


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
