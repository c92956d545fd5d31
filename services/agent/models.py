"""Tables of the agent service and the records its store reads and writes. Every row carries its tenant.

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
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit import usage
from services.kit.audit import outbox_table
from services.kit.db import new_metadata


class Base(DeclarativeBase):
    """Declarative base of this service's tables (its own MetaData, one Alembic lineage)."""

    metadata = new_metadata()


# Audit events of this service's calls, committed with their changes and relayed to auth.
AUDIT_OUTBOX = outbox_table(Base.metadata)
# Usage events of runs, committed with the run state they meter and relayed to billing.
USAGE_OUTBOX = usage.outbox_table(Base.metadata)


class Agent(Base):
    """An agent's configuration."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    instructions: Mapped[str] = mapped_column(Text)
    tools: Mapped[list[str]] = mapped_column(JSON)
    temperature: Mapped[float | None] = mapped_column(Float)
    max_output_tokens: Mapped[int] = mapped_column(Integer)
    tool_choice: Mapped[str] = mapped_column(String(20))
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revision_id: Mapped[str] = mapped_column(String(63), default="")
    revision_create_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    delete_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    approval_required_tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    template: Mapped[str] = mapped_column(String(500), default="")


@dataclass(frozen=True, slots=True)
class AgentRow:
    """An agent's configuration, as stored: the fields of its current revision.

    A deleted agent keeps its row, with ``delete_time`` set, so that its runs and
    revisions stay readable and its ID is not taken by another agent.
    """

    tenant_id: str
    id: str
    display_name: str
    model: str
    instructions: str
    tools: list[str]
    temperature: float | None
    max_output_tokens: int
    tool_choice: str
    request_id: str | None
    create_time: dt.datetime
    revision_id: str
    revision_create_time: dt.datetime | None
    delete_time: dt.datetime | None
    approval_required_tools: list[str]
    template: str


#: The columns of an agent that make up a revision, in order (``UpdateAgent``'s mutable fields).
REVISION_FIELDS = (
    "display_name",
    "model",
    "instructions",
    "tools",
    "temperature",
    "max_output_tokens",
    "tool_choice",
    "approval_required_tools",
)


class AgentRevision(Base):
    """One immutable revision of an agent's configuration (AIP-162)."""

    __tablename__ = "agent_revisions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"], ["agents.tenant_id", "agents.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    instructions: Mapped[str] = mapped_column(Text)
    tools: Mapped[list[str]] = mapped_column(JSON)
    temperature: Mapped[float | None] = mapped_column(Float)
    max_output_tokens: Mapped[int] = mapped_column(Integer)
    tool_choice: Mapped[str] = mapped_column(String(20))
    approval_required_tools: Mapped[list[str]] = mapped_column(JSON, default=list)
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class AgentRevisionRow:
    """One revision of an agent, as stored; its fields after ``id`` are :data:`REVISION_FIELDS`."""

    tenant_id: str
    agent_id: str
    id: str
    display_name: str
    model: str
    instructions: str
    tools: list[str]
    temperature: float | None
    max_output_tokens: int
    tool_choice: str
    approval_required_tools: list[str]
    create_time: dt.datetime


class RunState(StrEnum):
    """Where a run is; stored as the member's value, ``Run.State.STATE_<value>`` on the wire."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    CANCELLED = "CANCELLED"


#: States a run may still leave; the others are final.
ACTIVE_STATES = frozenset({RunState.RUNNING, RunState.REQUIRES_ACTION})


class Run(Base):
    """One run of an agent, with its tool calls and token usage."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "agent_id", "request_id"),
        ForeignKeyConstraint(
            ["tenant_id", "agent_id"], ["agents.tenant_id", "agents.id"], ondelete="CASCADE"
        ),
        # The sweeper's and the per-tenant count's lookup of runs in progress by lease.
        Index("ix_runs_state_lease", "state", "lease_expire_time"),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(63), index=True)
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(20))
    tool_calls: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    model_calls: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str] = mapped_column(String(200), default="")
    tools_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    error_reason: Mapped[str] = mapped_column(String(100), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    executor: Mapped[str] = mapped_column(String(100), default="")
    lease_expire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    agent_revision_id: Mapped[str] = mapped_column(String(63), default="")
    thread_id: Mapped[str] = mapped_column(String(63), default="")
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pending_tool_calls: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    approval_request_id: Mapped[str | None] = mapped_column(String(100))
    cancel_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The subject of the token that started the run (an API key, user or service account),
    # which its usage events name for billing to group by.
    principal: Mapped[str] = mapped_column(String(300), default="", server_default="")


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run, as stored; each of ``tool_calls`` holds the fields of a ``ToolCall`` message.

    A run in progress is leased to the replica executing it (``executor``), which renews
    ``lease_expire_time`` while it works; a run whose lease has expired lost its executor.
    """

    tenant_id: str
    id: str
    agent_id: str
    input: str
    output: str
    state: str  # a RunState value
    tool_calls: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int
    model_calls: int
    model: str
    tools_enabled: bool
    error_reason: str
    error_message: str
    request_id: str | None
    create_time: dt.datetime
    end_time: dt.datetime | None
    executor: str
    lease_expire_time: dt.datetime | None
    agent_revision_id: str  # the agent revision the run used; empty for runs from before revisions
    thread_id: str  # the thread the run continues; empty for a run on its own
    last_sequence: int  # the sequence of its last stored event (RunEventRow), 0 before any
    # Where a run waiting for approvals resumes: runner.Checkpoint.to_json(); None otherwise.
    checkpoint: dict[str, Any] | None
    pending_tool_calls: list[dict[str, Any]]  # the ToolCall fields of the calls awaiting decisions
    approval_request_id: str | None  # the request_id of the SubmitToolApprovals that last resumed it
    cancel_time: dt.datetime | None  # when CancelRun asked its executor to stop it
    principal: str = ""  # the subject of the token that started it


class RunEvent(Base):
    """One event of a run (a serialized ``RunEvent`` message), numbered per run from 1."""

    __tablename__ = "run_events"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[bytes] = mapped_column(LargeBinary)


@dataclass(frozen=True, slots=True)
class RunEventRow:
    """A run's event, as stored: ``event`` is the ``RunEvent`` message, serialized."""

    tenant_id: str
    run_id: str
    sequence: int
    event: bytes


class Thread(Base):
    """A conversation that runs continue."""

    __tablename__ = "threads"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    thread_metadata: Mapped[dict[str, str]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """A thread, as stored; ``thread_metadata`` is the resource's ``metadata``."""

    tenant_id: str
    id: str
    thread_metadata: dict[str, str]
    request_id: str | None
    create_time: dt.datetime
    update_time: dt.datetime


class Role(StrEnum):
    """Who a thread's message is from; ``Message.Role.ROLE_<value>`` on the wire."""

    USER = "USER"
    ASSISTANT = "ASSISTANT"
    TOOL = "TOOL"


class ThreadMessage(Base):
    """One message of a thread, at its ``position`` (0, 1, ... in conversation order)."""

    __tablename__ = "thread_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "thread_id", "position"),
        ForeignKeyConstraint(
            ["tenant_id", "thread_id"], ["threads.tenant_id", "threads.id"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    tool_call: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    run: Mapped[str] = mapped_column(String(500))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message of a thread, as stored; ``tool_call`` holds a ``ToolCall``'s fields (``ROLE_TOOL``)."""

    tenant_id: str
    thread_id: str
    id: str
    position: int
    role: str  # a Role value
    content: str
    tool_call: dict[str, Any] | None
    run: str
    create_time: dt.datetime


class McpServer(Base):
    """An MCP server a tenant registered; ``headers_sealed`` is its headers, encrypted."""

    __tablename__ = "mcp_servers"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    url: Mapped[str] = mapped_column(String(2000))
    header_names: Mapped[list[str]] = mapped_column(JSON)
    headers_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    allowed_tools: Mapped[list[str]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class McpServerRow:
    """An MCP server, as stored.

    ``headers_sealed`` is the JSON object of its headers sealed with
    :class:`services.kit.sealing.Sealer` (associated data: the server's resource name);
    ``header_names`` are their names in the clear, sorted, for the resource's ``header_names``.
    """

    tenant_id: str
    id: str
    display_name: str
    url: str
    header_names: list[str]
    headers_sealed: bytes
    allowed_tools: list[str]
    request_id: str | None
    create_time: dt.datetime
    update_time: dt.datetime


#: The columns of an MCP server that ``UpdateMcpServer`` may change (``headers`` is stored
#: as ``header_names`` and ``headers_sealed``).
MCP_SERVER_FIELDS = ("display_name", "url", "headers", "allowed_tools")


class HttpTool(Base):
    """A tenant's tool that is one HTTP call; ``auth_sealed`` is its auth header's value, encrypted."""

    __tablename__ = "http_tools"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(String(2000))
    method: Mapped[str] = mapped_column(String(10))
    url_template: Mapped[str] = mapped_column(String(2000))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    auth_header_name: Mapped[str] = mapped_column(String(100), default="")
    auth_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    max_response_bytes: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class HttpToolRow:
    """An HTTP tool, as stored; ``auth_sealed`` is sealed for the tool's resource name (None: no header)."""

    tenant_id: str
    id: str
    display_name: str
    description: str
    method: str  # GET, POST, PUT, PATCH or DELETE
    url_template: str
    parameters: dict[str, Any]
    auth_header_name: str
    auth_sealed: bytes | None
    timeout_seconds: float
    max_response_bytes: int
    request_id: str | None
    create_time: dt.datetime
    update_time: dt.datetime


#: The fields of an HTTP tool that ``UpdateHttpTool`` may change.
HTTP_TOOL_FIELDS = (
    "display_name",
    "description",
    "method",
    "url_template",
    "parameters",
    "auth_header_name",
    "auth_header_value",
    "timeout",
    "max_response_bytes",
)


class NotificationChannel(Base):
    """A tenant's notification channel: its kind, its settings, and its secrets encrypted."""

    __tablename__ = "notification_channels"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    secrets_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class NotificationChannelRow:
    """A notification channel, as stored.

    ``settings`` is the kind's message as JSON without its secret fields;
    ``secrets_sealed`` the JSON object of those, sealed for the channel's resource name.
    """

    tenant_id: str
    id: str
    display_name: str
    kind: str  # email, slack, webhook or sms
    settings: dict[str, Any]
    secrets_sealed: bytes
    request_id: str | None
    create_time: dt.datetime
    update_time: dt.datetime


#: The fields of a channel that ``UpdateNotificationChannel`` may change.
CHANNEL_FIELDS = ("display_name", "email", "slack", "webhook", "sms")


class DeliveryState(StrEnum):
    """Where a notification's delivery is (``NotificationDelivery.State``)."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class NotificationDelivery(Base):
    """A notification sent on a channel: the outbox row its relay delivers, and its delivery's record."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel_id", "request_id"),
        Index("ix_notification_deliveries_due", "state", "next_attempt_time"),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), default="")
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(2000), default="")
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A notification's delivery, as stored; ``next_attempt_time`` is set while it is pending."""

    tenant_id: str
    channel_id: str
    id: str
    subject: str
    message: str
    state: str  # a DeliveryState value
    attempts: int
    last_error: str
    request_id: str | None
    create_time: dt.datetime
    next_attempt_time: dt.datetime | None
    end_time: dt.datetime | None


# The knowledge tables (knowledge bases, documents, chunks) join this metadata, so the
# lineage's migrations and schema checks cover them.
from services.agent.knowledge import models as _knowledge_models  # noqa: E402, F401
