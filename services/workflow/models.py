"""Tables of the workflow service and the records its store reads and writes. Every row carries its tenant.

Each ORM model is the schema of its table (Alembic compares migrations with it);
the frozen dataclass after it is the row as the service handles it, its fields
the table's columns in order (checked by :class:`~services.kit.repository.Repository`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.audit import outbox_table
from services.kit.db import new_metadata


class Base(DeclarativeBase):
    """Declarative base of this service's tables (its own MetaData, one Alembic lineage)."""

    metadata = new_metadata()


# Audit events of this service's calls, committed with their changes and relayed to auth.
AUDIT_OUTBOX = outbox_table(Base.metadata)


class Workflow(Base):
    """A workflow at its current revision.

    ``definition`` is the revision's JSON (see :mod:`services.workflow.definition`).
    """

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revision_id: Mapped[str] = mapped_column(String(63))
    revision_create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """A workflow at its current revision, as stored."""

    tenant_id: str
    id: str
    display_name: str
    request_id: str | None
    create_time: dt.datetime
    revision_id: str
    revision_create_time: dt.datetime
    definition: dict[str, Any]


class WorkflowRevision(Base):
    """An immutable revision of a workflow (AIP-162); runs are pinned to one."""

    __tablename__ = "workflow_revisions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "workflow_id"], ["workflows.tenant_id", "workflows.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    revision_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True, slots=True)
class WorkflowRevisionRow:
    """A workflow revision, as stored."""

    tenant_id: str
    workflow_id: str
    revision_id: str
    display_name: str
    definition: dict[str, Any]
    create_time: dt.datetime


class RunState(StrEnum):
    """Where a workflow run or one of its steps is; ``RunState.RUN_STATE_<value>`` on the wire."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"
    WAITING = "WAITING"


#: States a run or step does not leave.
ENDED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.SKIPPED, RunState.CANCELLED})


class WorkflowRun(Base):
    """A workflow run: the projection of its history (``workflow_run_events``).

    ``steps`` holds one state record per workflow step, in the workflow's order;
    every event that changes the run updates this row in the transaction that
    appends the event (:func:`services.workflow.history.apply`).
    """

    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "workflow_id", "request_id"),
        ForeignKeyConstraint(
            ["tenant_id", "workflow_id"], ["workflows.tenant_id", "workflows.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(63), index=True)
    input: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), index=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    output: Mapped[str] = mapped_column(Text, default="")
    error_reason: Mapped[str] = mapped_column(String(100), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revision_id: Mapped[str] = mapped_column(String(63))
    trigger: Mapped[str] = mapped_column(String(500), default="api")
    cancel_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)


@dataclass(frozen=True, slots=True)
class WorkflowRunRow:
    """A workflow run, as stored; ``steps`` holds one record per step, in order.

    A step record has ``step_id`` and ``state`` (a :class:`RunState` value), and as
    it goes ``input``, ``start_time``, ``agent_run``, ``attempts``; once ended
    ``end_time`` and ``output`` (JSON text) or ``error_reason``/``error_message``;
    ``compensated`` once its compensation ran.
    """

    tenant_id: str
    id: str
    workflow_id: str
    input: str
    state: str  # a RunState value
    steps: list[dict[str, Any]]
    output: str
    error_reason: str
    error_message: str
    request_id: str | None
    create_time: dt.datetime
    end_time: dt.datetime | None
    revision_id: str
    trigger: str
    cancel_time: dt.datetime | None
    last_sequence: int


class WorkflowRunEvent(Base):
    """One entry of a run's append-only history.

    ``dedup_key`` names the engine step that appended it, so a step the engine
    runs again after a crash appends nothing twice.
    """

    __tablename__ = "workflow_run_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "run_id", "dedup_key"),
        ForeignKeyConstraint(
            ["tenant_id", "run_id"], ["workflow_runs.tenant_id", "workflow_runs.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    step_id: Mapped[str] = mapped_column(String(63), default="")
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedup_key: Mapped[str] = mapped_column(String(300))


@dataclass(frozen=True, slots=True)
class WorkflowRunEventRow:
    """A run event, as stored."""

    tenant_id: str
    run_id: str
    sequence: int
    type: str
    step_id: str
    time: dt.datetime
    data: dict[str, Any]
    dedup_key: str


class WorkflowSignal(Base):
    """A signal delivered to a run, kept until a step takes it (``taken_by``: that step's engine key)."""

    __tablename__ = "workflow_signals"
    __table_args__ = (
        UniqueConstraint("tenant_id", "run_id", "request_id"),
        ForeignKeyConstraint(
            ["tenant_id", "run_id"], ["workflow_runs.tenant_id", "workflow_runs.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(63))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    taken_by: Mapped[str | None] = mapped_column(String(300))


@dataclass(frozen=True, slots=True)
class WorkflowSignalRow:
    """A signal, as stored."""

    tenant_id: str
    id: str
    run_id: str
    name: str
    payload: dict[str, Any]
    request_id: str | None
    create_time: dt.datetime
    taken_by: str | None


class Trigger(Base):
    """A webhook trigger of a workflow; ``secret_sealed`` is its signing secret, encrypted.

    The secret is sealed with :class:`~services.kit.sealing.Sealer` for the trigger's
    resource name, so a sealed value copied onto another trigger's row does not open.
    """

    __tablename__ = "workflow_triggers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "workflow_id"], ["workflows.tenant_id", "workflows.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class TriggerRow:
    """A webhook trigger, as stored (its secret sealed)."""

    tenant_id: str
    workflow_id: str
    id: str
    secret_sealed: bytes
    create_time: dt.datetime


class OverlapPolicy(StrEnum):
    """What a schedule does at a fire time while its previous run has not ended.

    ``OverlapPolicy.OVERLAP_POLICY_<value>`` on the wire.
    """

    SKIP = "SKIP"
    BUFFER_ONE = "BUFFER_ONE"
    ALLOW_ALL = "ALLOW_ALL"


class Schedule(Base):
    """A cron schedule of a workflow.

    ``last_run_id`` is the run its latest fire time started (what the overlap policy
    looks at); ``buffered_fire_time`` the one fire time that waits for that run to end
    under ``BUFFER_ONE``. ``catchup_seconds`` 0 means fire times missed during downtime
    are never caught up. ``active_since`` is when it was created or last resumed: fire
    times before it (missed while paused) never start a run.
    """

    __tablename__ = "workflow_schedules"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "workflow_id"], ["workflows.tenant_id", "workflows.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    cron: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(100))
    input: Mapped[str] = mapped_column(Text, default="")
    overlap_policy: Mapped[str] = mapped_column(String(20))
    catchup_seconds: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    last_fire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_id: Mapped[str | None] = mapped_column(String(63))
    buffered_fire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    active_since: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule, as stored (see :class:`Schedule`)."""

    tenant_id: str
    workflow_id: str
    id: str
    cron: str
    time_zone: str
    input: str
    overlap_policy: str  # an OverlapPolicy value
    catchup_seconds: int
    paused: bool
    last_fire_time: dt.datetime | None
    last_run_id: str | None
    buffered_fire_time: dt.datetime | None
    active_since: dt.datetime
    create_time: dt.datetime
