"""Tables of the flag service."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.audit import outbox_table
from services.kit.db import new_metadata


class Base(DeclarativeBase):
    """Declarative base of the flag service's tables."""

    metadata = new_metadata()


# Audit events of this service's calls, committed with their changes and relayed to auth.
AUDIT_OUTBOX = outbox_table(Base.metadata)


class Flag(Base):
    """A tenant's feature flag, stored as a flagd flag definition.

    ``key`` is the last segment of ``tenants/{tenant}/flags/{flag}``; ``state`` is
    flagd's ``ENABLED`` or ``DISABLED``; ``variants`` maps variant names to JSON
    values of one kind; ``targeting`` is a JsonLogic rule or None
    (https://flagd.dev/reference/flag-definitions/).
    """

    __tablename__ = "flags"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    variants: Mapped[dict[str, Any]] = mapped_column(JSON)
    default_variant: Mapped[str] = mapped_column(String(200))
    targeting: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
