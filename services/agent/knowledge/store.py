"""SQL of knowledge bases, documents and chunks, through the kit's repository.

Every query filters by the transaction's tenant, except :func:`claim_document`, the one
system query (it finds work of any tenant, as the run sweeper does). Every change of a
knowledge base's chunks bumps its ``generation`` in the same transaction (see
:mod:`services.agent.knowledge.models`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from services.agent.knowledge.models import (
    Chunk,
    ChunkRow,
    Document,
    DocumentContent,
    DocumentContentRow,
    DocumentRow,
    DocumentState,
    KnowledgeBase,
    KnowledgeBaseRow,
)
from services.kit.db import Tx
from services.kit.pagination import Listing, Page
from services.kit.repository import NEWEST_FIRST, Repository

KNOWLEDGE_BASES = Repository(KnowledgeBase, KnowledgeBaseRow, order=NEWEST_FIRST)
DOCUMENTS = Repository(Document, DocumentRow, order=NEWEST_FIRST)
CONTENTS = Repository(DocumentContent, DocumentContentRow)
CHUNKS = Repository(Chunk, ChunkRow)
_KBS = KNOWLEDGE_BASES.table
_DOCS = DOCUMENTS.table
_CONTENTS = CONTENTS.table
_CHUNKS = CHUNKS.table


@dataclass(frozen=True, slots=True)
class Lease:
    """Which replica ingests a document's content, until when.

    Attributes:
        tenant_id: The document's tenant.
        knowledge_base_id: Its knowledge base.
        document_id: The document.
        content_generation: The content being ingested.
        owner: The replica.
    """

    tenant_id: str
    knowledge_base_id: str
    document_id: str
    content_generation: int
    owner: str


def create_knowledge_base(tx: Tx, kb: KnowledgeBaseRow) -> KnowledgeBaseRow | None:
    """Inserts a knowledge base, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        None when its ID is taken.
    """
    return KNOWLEDGE_BASES.create(tx, kb)


def get_knowledge_base(tx: Tx, kb_id: str) -> KnowledgeBaseRow | None:
    """Returns the tenant's knowledge base, or None."""
    return KNOWLEDGE_BASES.get(tx, kb_id)


def get_knowledge_bases(tx: Tx, kb_ids: Sequence[str]) -> list[KnowledgeBaseRow]:
    """Returns those of the tenant's knowledge bases whose IDs are given."""
    if not kb_ids:
        return []
    return KNOWLEDGE_BASES.find_all(tx, _KBS.c.id.in_(list(kb_ids)))


def list_knowledge_bases(tx: Tx, page: Page) -> Listing[KnowledgeBaseRow]:
    """Returns a page of the tenant's knowledge bases, newest first."""
    return KNOWLEDGE_BASES.list_page(tx, page)


def update_knowledge_base(tx: Tx, kb_id: str, values: Mapping[str, Any]) -> KnowledgeBaseRow | None:
    """Sets ``values`` on the knowledge base; returns it, or None when there is none."""
    return KNOWLEDGE_BASES.update(tx, (kb_id,), values)


class NotEmpty(Exception):
    """The knowledge base has documents and the delete was not forced (nothing was written)."""


def delete_knowledge_base(tx: Tx, kb_id: str, *, force: bool) -> bool:
    """Deletes the knowledge base; its documents and chunks go with it (foreign keys cascade).

    Returns:
        Whether there was one.

    Raises:
        NotEmpty: It has documents and ``force`` is False.
    """
    if not force:
        query = select(_DOCS.c.id).where(
            _DOCS.c.tenant_id == tx.tenant_id, _DOCS.c.knowledge_base_id == kb_id
        )
        if tx.execute(query.limit(1)).first() is not None:
            raise NotEmpty(kb_id)
    for table in (_CHUNKS, _CONTENTS):
        tx.execute(delete(table).where(table.c.tenant_id == tx.tenant_id, table.c.knowledge_base_id == kb_id))
    tx.execute(delete(_DOCS).where(_DOCS.c.tenant_id == tx.tenant_id, _DOCS.c.knowledge_base_id == kb_id))
    return KNOWLEDGE_BASES.delete(tx, kb_id)


class KnowledgeBaseMissing(Exception):
    """The knowledge base a document was added to does not exist (nothing was written)."""


def create_document(tx: Tx, document: DocumentRow, content: bytes) -> DocumentRow | None:
    """Inserts a document and its content, or returns the one an earlier request with its ``request_id`` made.

    Returns:
        None when its ID is taken.

    Raises:
        KnowledgeBaseMissing: There is no such knowledge base.
    """
    if KNOWLEDGE_BASES.get(tx, document.knowledge_base_id) is None:
        raise KnowledgeBaseMissing(document.knowledge_base_id)
    created = DOCUMENTS.create(tx, document)
    if created is document:
        CONTENTS.insert(
            tx, DocumentContentRow(document.tenant_id, document.knowledge_base_id, document.id, content)
        )
    return created


def get_document(tx: Tx, kb_id: str, document_id: str, *, lock: bool = False) -> DocumentRow | None:
    """Returns the tenant's document, or None."""
    return DOCUMENTS.get(tx, kb_id, document_id, lock=lock)


def get_content(tx: Tx, kb_id: str, document_id: str) -> bytes | None:
    """Returns the document's content, or None when there is no such document."""
    row = CONTENTS.get(tx, kb_id, document_id)
    return None if row is None else row.content


def list_documents(tx: Tx, kb_id: str, page: Page) -> Listing[DocumentRow] | None:
    """Returns a page of the knowledge base's documents, newest first; None when it is missing."""
    if KNOWLEDGE_BASES.get(tx, kb_id) is None:
        return None
    return DOCUMENTS.list_page(tx, page, _DOCS.c.knowledge_base_id == kb_id)


def update_document(
    tx: Tx, kb_id: str, document_id: str, values: Mapping[str, Any], content: bytes | None
) -> DocumentRow | None:
    """Sets ``values`` on the document; new ``content`` (or a new media type) makes it PENDING again.

    Its chunks stay until the new content's replace them (:func:`finish_ingestion`).

    Args:
        tx: The transaction.
        kb_id: Its knowledge base.
        document_id: The document.
        values: Column values to set.
        content: New content, or None to keep it.

    Returns:
        The document, or None when there is none.
    """
    changes = dict(values)
    if content is not None or "mime_type" in changes:
        changes.update(
            content_generation=_DOCS.c.content_generation + 1,
            state=DocumentState.PENDING,
            chunks_done=0,
            chunks_total=0,
            error_reason="",
            error_message="",
            lease_owner=None,
            lease_expire_time=None,
        )
    updated = DOCUMENTS.update(tx, (kb_id, document_id), changes)
    if updated is not None and content is not None:
        CONTENTS.update(tx, (kb_id, document_id), {"content": content})
    return updated


def delete_document(tx: Tx, kb_id: str, document_id: str, now: dt.datetime) -> bool:
    """Deletes the document and its chunks; the knowledge base's chunk count and generation follow.

    Returns:
        Whether there was one.
    """
    removed = _delete_chunks(tx, kb_id, document_id)
    if not DOCUMENTS.delete(tx, kb_id, document_id):
        return False
    _chunks_changed(tx, kb_id, -removed, now)
    return True


def _delete_chunks(tx: Tx, kb_id: str, document_id: str) -> int:
    where = and_(
        _CHUNKS.c.tenant_id == tx.tenant_id,
        _CHUNKS.c.knowledge_base_id == kb_id,
        _CHUNKS.c.document_id == document_id,
    )
    return int(tx.execute(delete(_CHUNKS).where(where)).rowcount)


def _chunks_changed(tx: Tx, kb_id: str, added: int, now: dt.datetime) -> None:
    """Moves the knowledge base's chunk count by ``added`` and bumps its generation (cache invalidation)."""
    tx.execute(
        update(_KBS)
        .where(_KBS.c.tenant_id == tx.tenant_id, _KBS.c.id == kb_id)
        .values(chunk_count=_KBS.c.chunk_count + added, generation=_KBS.c.generation + 1, update_time=now)
    )


def claim_document(
    tx: Tx, owner: str, now: dt.datetime, lease_seconds: float, embedding_model: str
) -> tuple[DocumentRow, bytes] | None:
    """Takes the oldest document waiting for ingestion, of any tenant, for ``owner`` (system work).

    A document waits when it is PENDING, or PROCESSING with a lease that expired (its
    replica stopped). Only documents of knowledge bases embedded with ``embedding_model``
    (the claiming replica's) are taken, so chunks of one knowledge base are never
    embedded by two models. On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets replicas
    claim different documents at once; SQLite's write lock serializes claims.

    Returns:
        The claimed document, now PROCESSING under ``owner``'s lease from 0 chunks, and
        its content; None when nothing waits.
    """
    waiting = or_(
        _DOCS.c.state == DocumentState.PENDING,
        and_(_DOCS.c.state == DocumentState.PROCESSING, _DOCS.c.lease_expire_time < now),
    )
    same_model = and_(
        _KBS.c.tenant_id == _DOCS.c.tenant_id,
        _KBS.c.id == _DOCS.c.knowledge_base_id,
        _KBS.c.embedding_model == embedding_model,
    )
    query = select(_DOCS.c.tenant_id, _DOCS.c.knowledge_base_id, _DOCS.c.id).where(waiting)
    query = query.where(select(_KBS.c.id).where(same_model).exists())
    query = query.order_by(_DOCS.c.update_time).limit(1).with_for_update(of=_DOCS, skip_locked=True)
    found = tx.execute(query).first()
    if found is None:
        return None
    tenant_id, kb_id, document_id = found
    tx.bind(tenant_id)
    claimed = DOCUMENTS.update(
        tx,
        (kb_id, document_id),
        {
            "state": DocumentState.PROCESSING,
            "chunks_done": 0,
            "chunks_total": 0,
            "lease_owner": owner,
            "lease_expire_time": now + dt.timedelta(seconds=lease_seconds),
            "update_time": now,
        },
    )
    content = CONTENTS.get(tx, kb_id, document_id)
    if claimed is None or content is None:
        return None
    return claimed, content.content


def _leased(tx: Tx, lease: Lease) -> Any:
    return and_(
        _DOCS.c.tenant_id == tx.tenant_id,
        _DOCS.c.knowledge_base_id == lease.knowledge_base_id,
        _DOCS.c.id == lease.document_id,
        _DOCS.c.lease_owner == lease.owner,
        _DOCS.c.content_generation == lease.content_generation,
        _DOCS.c.state == DocumentState.PROCESSING,
    )


def record_progress(
    tx: Tx, lease: Lease, done: int, total: int, now: dt.datetime, lease_seconds: float
) -> bool:
    """Records ``done`` of ``total`` chunks embedded and renews the lease.

    Returns:
        Whether the lease still holds (False: the document was changed, deleted or
        taken over, and this ingestion must stop).
    """
    values = {
        "chunks_done": done,
        "chunks_total": total,
        "lease_expire_time": now + dt.timedelta(seconds=lease_seconds),
        "update_time": now,
    }
    return bool(tx.execute(update(_DOCS).where(_leased(tx, lease)).values(**values)).rowcount)


def finish_ingestion(tx: Tx, lease: Lease, chunks: Sequence[ChunkRow], now: dt.datetime) -> bool:
    """Replaces the document's chunks with ``chunks`` and makes it READY, in this one transaction.

    Searches see the old chunks or the new ones, never a mix (the knowledge base's
    generation moves with them).

    Returns:
        Whether the lease still held; nothing is written otherwise.
    """
    values = {
        "state": DocumentState.READY,
        "chunks_done": len(chunks),
        "chunks_total": len(chunks),
        "lease_owner": None,
        "lease_expire_time": None,
        "update_time": now,
    }
    if not tx.execute(update(_DOCS).where(_leased(tx, lease)).values(**values)).rowcount:
        return False
    removed = _delete_chunks(tx, lease.knowledge_base_id, lease.document_id)
    CHUNKS.insert_many(tx, [CHUNKS.values(chunk) for chunk in chunks])
    _chunks_changed(tx, lease.knowledge_base_id, len(chunks) - removed, now)
    return True


def fail_ingestion(tx: Tx, lease: Lease, reason: str, message: str, now: dt.datetime) -> bool:
    """Marks the document FAILED with ``reason``; its earlier chunks stay.

    Returns:
        Whether the lease still held; nothing is written otherwise.
    """
    values = {
        "state": DocumentState.FAILED,
        "error_reason": reason,
        "error_message": message[:2000],
        "lease_owner": None,
        "lease_expire_time": None,
        "update_time": now,
    }
    return bool(tx.execute(update(_DOCS).where(_leased(tx, lease)).values(**values)).rowcount)


@dataclass(frozen=True, slots=True)
class StoredChunks:
    """Every chunk of a knowledge base, as the search index loads them.

    Attributes:
        generation: The knowledge base's generation read before the chunks (the chunks
            are of that generation or a later one).
        titles: Document ID -> display name (the ID when it has none).
        chunks: ``(document ID, position, section, text, embedding bytes)``, by document and position.
    """

    generation: int
    titles: dict[str, str]
    chunks: list[tuple[str, int, str, str, bytes]]


def load_chunks(tx: Tx, kb_id: str) -> StoredChunks | None:
    """Returns every chunk of the knowledge base and its generation; None when there is no such one."""
    kb = KNOWLEDGE_BASES.get(tx, kb_id)
    if kb is None:
        return None
    titles = {
        document_id: display_name or document_id
        for document_id, display_name in tx.execute(
            select(_DOCS.c.id, _DOCS.c.display_name).where(
                _DOCS.c.tenant_id == tx.tenant_id, _DOCS.c.knowledge_base_id == kb_id
            )
        ).all()
    }
    query = (
        select(
            _CHUNKS.c.document_id, _CHUNKS.c.position, _CHUNKS.c.section, _CHUNKS.c.text, _CHUNKS.c.embedding
        )
        .where(_CHUNKS.c.tenant_id == tx.tenant_id, _CHUNKS.c.knowledge_base_id == kb_id)
        .order_by(_CHUNKS.c.document_id, _CHUNKS.c.position)
    )
    rows = [(d, p, s, t, bytes(e)) for d, p, s, t, e in tx.execute(query).all()]
    return StoredChunks(kb.generation, titles, rows)


def count_chunks(tx: Tx, kb_id: str, document_id: str) -> int:
    """Returns how many chunks of the document are stored (tests and diagnostics)."""
    query = select(func.count()).where(
        _CHUNKS.c.tenant_id == tx.tenant_id,
        _CHUNKS.c.knowledge_base_id == kb_id,
        _CHUNKS.c.document_id == document_id,
    )
    return int(tx.execute(query).scalar_one())
