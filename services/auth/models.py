"""Tables of the auth service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.db import new_metadata


class Base(DeclarativeBase):
    """Declarative base of this service's tables (its own MetaData, one Alembic lineage)."""

    metadata = new_metadata()


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


class SigningKey(Base):
    """An Ed25519 key that signs tokens. Published in the JWKS until retired."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, str]] = mapped_column(JSON)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    retire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
