"""Tables of the flag service and the records its store reads and writes.

Each ORM model is the schema of its table (Alembic compares migrations with it);
the frozen dataclass after it is the row as the service handles it, its fields
the table's columns in order (checked by :class:`~services.kit.repository.Repository`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.audit import outbox_table
from services.kit.db import new_metadata


class Base(DeclarativeBase):
    """Declarative base of the flag service's tables."""

    metadata = new_metadata()


# Audit events of this service's calls, committed with their changes and relayed to auth.
AUDIT_OUTBOX = outbox_table(Base.metadata)


class FlagState(StrEnum):
    """flagd's flag states (https://flagd.dev/reference/flag-definitions/).

    ``Flag.State.STATE_<value>`` on the wire.
    """

    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class Flag(Base):
    """A tenant's feature flag, stored as a flagd flag definition.

    ``key`` is the last segment of ``tenants/{tenant}/flags/{flag}``; ``state`` is a
    :class:`FlagState` value; ``variants`` maps variant names to JSON values of one
    kind; ``targeting`` is a JsonLogic rule or None
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
    revision_id: Mapped[str] = mapped_column(String(63), default="")
    flag_set: Mapped[str] = mapped_column(String(63), default="")


@dataclass(frozen=True, slots=True)
class FlagRow:
    """A flag, as stored.

    ``revision_id`` is its current :class:`FlagRevision`'s; ``flag_set`` its flag set's ID (flagd's
    ``flagSetId``; empty: the tenant's default set).
    """

    tenant_id: str
    key: str
    state: str  # a FlagState value
    variants: dict[str, Any]
    default_variant: str
    targeting: dict[str, Any] | None
    description: str
    create_time: dt.datetime
    update_time: dt.datetime
    revision_id: str = ""
    flag_set: str = ""


class RevisionAction(StrEnum):
    """The change that made a flag revision; ``FlagRevision.Action.ACTION_<value>`` on the wire."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    ROLLBACK = "ROLLBACK"
    IMPORT = "IMPORT"


class FlagRevision(Base):
    """One immutable revision of a flag (AIP-162), kept after the flag is deleted.

    ``sequence`` numbers a flag key's revisions 1, 2, ... in the order they were made
    (a key created again continues its numbers); ``definition`` is the flag's flagd
    flag definition after the change, with its description as ``metadata.description``
    (None for a deletion); ``diff`` is the RFC 6902 JSON Patch from the definition of
    the revision before; ``principal`` the subject of the caller's token;
    ``request_id`` the idempotency key of the call that made it, if any.
    """

    __tablename__ = "flag_revisions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "flag_key", "sequence"),
        UniqueConstraint("tenant_id", "request_id", "flag_key"),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    flag_key: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    diff: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    principal: Mapped[str] = mapped_column(String(300))
    rollback_revision_id: Mapped[str] = mapped_column(String(63), default="")
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class FlagRevisionRow:
    """A flag revision, as stored (see :class:`FlagRevision`)."""

    tenant_id: str
    flag_key: str
    id: str
    sequence: int
    action: str  # a RevisionAction value
    definition: dict[str, Any] | None
    diff: list[dict[str, Any]]
    principal: str
    rollback_revision_id: str
    request_id: str | None
    create_time: dt.datetime


class FlagUsage(Base):
    """Evaluations of a flag in one hour that served one variant for one reason.

    ``hour`` is the start of the hour (UTC); replicas add their in-memory counts to ``count``
    (:mod:`services.flag.usage`) and raise ``last_evaluate_time`` to their last evaluation's.
    ``variant`` is empty when none was served (reasons ``DISABLED`` and ``ERROR``).
    """

    __tablename__ = "flag_usage"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    flag_key: Mapped[str] = mapped_column(String(63), primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    variant: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    last_evaluate_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class FlagUsageRow:
    """One hour's evaluations of a flag for one variant and reason, as stored."""

    tenant_id: str
    flag_key: str
    hour: dt.datetime
    variant: str
    reason: str
    count: int
    last_evaluate_time: dt.datetime


class FlagSet(Base):
    """A tenant's flag set: when it last changed, as a number of the global change sequence.

    Every replica keeps every tenant's flags in memory and reloads a tenant whose
    ``revision`` is above the last one it loaded (:mod:`services.flag.flagsets`).
    """

    __tablename__ = "flag_sets"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class FlagChangeSequence(Base):
    """One row: the number of the last change to any tenant's flags.

    A change takes the next number with ``UPDATE ... RETURNING``, which locks the row
    until the change commits, so numbers are taken in commit order and a replica
    that has loaded every change up to ``n`` never misses one below it.
    """

    __tablename__ = "flag_change_sequence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
