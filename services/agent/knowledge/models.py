"""Tables of knowledge bases, their documents and chunks, and the records the knowledge store handles.

They join the agent service's metadata (:class:`services.agent.models.Base`), so the
agent lineage's migrations (0009) and the schema checks cover them. Every row carries
its tenant; on PostgreSQL row-level security enforces it (migration 0009).

Cache invalidation: ``knowledge_bases.generation`` is bumped in the same transaction
as every change to the knowledge base's chunks (a document's ingestion finishing,
a document deleted), so a reader that compares it with the generation its in-memory
matrix was built from (:mod:`services.agent.knowledge.index`) never searches stale
chunks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.agent.models import Base


class DocumentState(StrEnum):
    """Where a document's ingestion is (``Document.State`` in the contract)."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    READY = "READY"
    FAILED = "FAILED"


class KnowledgeBase(Base):
    """A tenant's knowledge base."""

    __tablename__ = "knowledge_bases"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id"),)

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000))
    embedding_model: Mapped[str] = mapped_column(String(200))
    chunk_count: Mapped[int] = mapped_column(BigInteger)
    generation: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class KnowledgeBaseRow:
    """A knowledge base, as stored; ``generation`` counts changes of its chunks."""

    tenant_id: str
    id: str
    display_name: str
    description: str
    embedding_model: str
    chunk_count: int
    generation: int
    request_id: str | None
    create_time: dt.datetime
    update_time: dt.datetime


class Document(Base):
    """A document of a knowledge base (its content is in :class:`DocumentContent`)."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "knowledge_base_id"],
            ["knowledge_bases.tenant_id", "knowledge_bases.id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("tenant_id", "knowledge_base_id", "request_id"),
        Index("ix_knowledge_documents_state", "state", "lease_expire_time"),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    knowledge_base_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    mime_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_sha256: Mapped[str] = mapped_column(String(64))
    content_generation: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    chunks_done: Mapped[int] = mapped_column(Integer)
    chunks_total: Mapped[int] = mapped_column(Integer)
    error_reason: Mapped[str] = mapped_column(String(100))
    error_message: Mapped[str] = mapped_column(String(2000))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expire_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str | None] = mapped_column(String(100))
    create_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class DocumentRow:
    """A document, as stored.

    ``content_generation`` counts its contents: an ingestion records its chunks only if
    the document still has the content it started from. ``lease_owner`` and
    ``lease_expire_time`` say which replica is ingesting it until when; an expired
    lease (the replica stopped) makes it claimable again.
    """

    tenant_id: str
    knowledge_base_id: str
    id: str
    display_name: str
    mime_type: str
    size_bytes: int
    content_sha256: str
    content_generation: int
    state: str
    chunks_done: int
    chunks_total: int
    error_reason: str
    error_message: str
    lease_owner: str | None
    lease_expire_time: dt.datetime | None
    request_id: str | None
    create_time: dt.datetime
    update_time: dt.datetime


class DocumentContent(Base):
    """A document's bytes, kept so ingestion can run (again) after a restart; read only by ingestion."""

    __tablename__ = "knowledge_document_contents"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "knowledge_base_id", "document_id"],
            [
                "knowledge_documents.tenant_id",
                "knowledge_documents.knowledge_base_id",
                "knowledge_documents.id",
            ],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    knowledge_base_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


@dataclass(frozen=True, slots=True)
class DocumentContentRow:
    """A document's content, as stored."""

    tenant_id: str
    knowledge_base_id: str
    document_id: str
    content: bytes


class Chunk(Base):
    """One chunk of a READY document: its text and its embedding (float32, little-endian bytes)."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "knowledge_base_id", "document_id"],
            [
                "knowledge_documents.tenant_id",
                "knowledge_documents.knowledge_base_id",
                "knowledge_documents.id",
            ],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    knowledge_base_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    section: Mapped[str] = mapped_column(String(1000))
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """A chunk, as stored; ``embedding`` is its unit vector as float32 bytes (``numpy.tobytes``)."""

    tenant_id: str
    knowledge_base_id: str
    document_id: str
    position: int
    section: str
    text: str
    embedding: bytes


#: The columns of a knowledge base that ``UpdateKnowledgeBase`` may change.
KNOWLEDGE_BASE_FIELDS = ("display_name", "description")
#: The fields of a document that ``UpdateDocument`` may change.
DOCUMENT_FIELDS = ("display_name", "mime_type", "content")
