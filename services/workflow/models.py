"""Tables of the workflow service and the records its store reads and writes. Every row carries its tenant.

Each ORM model is the schema of its table (Alembic compares migrations with it);
the frozen dataclass after it is the row as the service handles it, its fields
the table's columns in order (checked by :class:`~services.kit.repository.Repository`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

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


class StepDefinition(TypedDict):
    """One step of a workflow definition."""

    id: str
    agent: str
    input_template: str


class Workflow(Base):
    """A workflow definition; ``steps`` is a list of ``{id, agent, input_template}``."""

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    steps: Mapped[list[StepDefinition]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """A workflow definition, as stored."""

    tenant_id: str
    id: str
    display_name: str
    steps: list[StepDefinition]
    request_id: str | None
    create_time: dt.datetime


class RunState(StrEnum):
    """Where a workflow run or one of its steps is; ``RunState.RUN_STATE_<value>`` on the wire."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class WorkflowRun(Base):
    """A workflow run. ``steps`` holds one state record per workflow step, in order.

    The run is the unit of durability: its row is written after every step, so
    a restarted service resumes at the first step that has not succeeded.
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


@dataclass(frozen=True, slots=True)
class WorkflowRunRow:
    """A workflow run, as stored; ``steps`` holds one record per step, in order.

    A step record has ``step_id`` and ``state`` (a :class:`RunState` value), and once
    started ``input``, ``start_time``, ``agent_run``; once ended ``end_time`` and
    ``output`` or ``error_reason``/``error_message``.
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
