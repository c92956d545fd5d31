"""The knowledge RPCs of ``AgentService``: protos in, knowledge store and search calls, protos out.

:class:`KnowledgeRpcs` is a base of :class:`services.agent.service.AgentService`; it
uses the servicer's database and its :class:`Knowledge`.

The agent service owns knowledge bases because its runs are where they are searched:
the ``knowledge_search`` tool runs inside a run, on the replica executing it, and reads
chunks from the same database as the agent, with no call to another service per search.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2

from orchestrall.agent.v1 import knowledge_pb2 as kpb
from services.agent.errors import DOMAIN
from services.agent.knowledge import errors, store
from services.agent.knowledge.embedding import Embedder
from services.agent.knowledge.ingest import Ingestor
from services.agent.knowledge.models import (
    DOCUMENT_FIELDS,
    KNOWLEDGE_BASE_FIELDS,
    DocumentRow,
    DocumentState,
    KnowledgeBaseRow,
)
from services.agent.knowledge.parsing import (
    MEDIA_TYPES,
    PDF,
    DocumentUnreadable,
    base_media_type,
    decode_text,
)
from services.agent.knowledge.search import DOCUMENT, KNOWLEDGE_BASE, Searcher
from services.kit.audit import note_resource
from services.kit.auth import require_tenant
from services.kit.db import Database, Tx
from services.kit.enums import EnumMap
from services.kit.errors import FieldViolation, InvalidArgument, error_status
from services.kit.fieldmask import update_paths
from services.kit.names import TENANT, new_id, validate_id
from services.kit.pagination import page_of
from services.kit.timestamps import to_timestamp, utcnow

DOCUMENT_STATES = EnumMap(DocumentState, kpb.Document.State, "STATE_")
DEFAULT_MAX_RESULTS = 5
KB_IGNORED_FIELDS = frozenset({"name", "embedding_model", "chunk_count", "create_time", "update_time"})
DOCUMENT_IGNORED_FIELDS = frozenset(
    {"name", "size_bytes", "content_sha256", "state", "chunks_done", "chunks_total", "error"}
    | {"create_time", "update_time"}
)


@dataclass(frozen=True)
class Knowledge:
    """What the knowledge RPCs and tools work with.

    Attributes:
        embedder: The deployment's embedding model.
        searcher: Searches knowledge bases.
        ingestor: Ingests documents in the background.
    """

    embedder: Embedder
    searcher: Searcher
    ingestor: Ingestor


def knowledge_base_to_proto(kb: KnowledgeBaseRow) -> kpb.KnowledgeBase:
    """Maps a knowledge base row to its resource."""
    return kpb.KnowledgeBase(
        name=KNOWLEDGE_BASE.format(kb.tenant_id, kb.id),
        display_name=kb.display_name,
        description=kb.description,
        embedding_model=kb.embedding_model,
        chunk_count=kb.chunk_count,
        create_time=to_timestamp(kb.create_time),
        update_time=to_timestamp(kb.update_time),
    )


def document_to_proto(document: DocumentRow) -> kpb.Document:
    """Maps a document row to its resource (its content is write-only)."""
    message = kpb.Document(
        name=DOCUMENT.format(document.tenant_id, document.knowledge_base_id, document.id),
        display_name=document.display_name,
        mime_type=document.mime_type,
        size_bytes=document.size_bytes,
        content_sha256=document.content_sha256,
        state=DOCUMENT_STATES.to_proto(document.state),
        chunks_done=document.chunks_done,
        chunks_total=document.chunks_total,
        create_time=to_timestamp(document.create_time),
        update_time=to_timestamp(document.update_time),
    )
    if document.error_reason:
        code = errors.INGESTION_FAILURE_CODES.get(document.error_reason, grpc.StatusCode.INTERNAL)
        message.error.CopyFrom(error_status(code, document.error_reason, document.error_message, DOMAIN))
    return message


def content_violations(mime_type: str, content: bytes, where: str = "document") -> list[FieldViolation]:
    """Checks a document's media type and content before it is accepted.

    Lengths are the contract's rules (checked before); ingestion finds the rest (a PDF
    that does not parse, a document without text: STATE_FAILED).

    Returns:
        A violation of ``{where}.mime_type`` for an unsupported type, of
        ``{where}.content`` for empty content, text that is not UTF-8 or is blank, or a
        PDF without a ``%PDF-`` header in its first 1024 bytes.
    """
    media_type = base_media_type(mime_type)
    if media_type not in MEDIA_TYPES:
        return [FieldViolation(f"{where}.mime_type", f"must be one of {', '.join(MEDIA_TYPES)}")]
    if not content:
        return [FieldViolation(f"{where}.content", "must not be empty")]
    if media_type == PDF:
        if b"%PDF-" not in content[:1024]:
            return [FieldViolation(f"{where}.content", "is not a PDF (no %PDF- header)")]
        return []
    try:
        text = decode_text(content)
    except DocumentUnreadable as error:
        return [FieldViolation(f"{where}.content", str(error))]
    if not text.strip():
        return [FieldViolation(f"{where}.content", "holds no text")]
    return []


def _update_document(
    tx: Tx, kb_id: str, document_id: str, message: kpb.Document, paths: tuple[str, ...]
) -> DocumentRow | None:
    """Reads the document locked, checks the updated media type and content, and writes the named fields.

    Raises:
        InvalidArgument: The updated document breaks a rule of ``CreateDocument`` (nothing is written).
    """
    stored = store.get_document(tx, kb_id, document_id, lock=True)
    if stored is None:
        return None
    values: dict[str, Any] = {}
    content: bytes | None = None
    if "display_name" in paths:
        values["display_name"] = message.display_name
    if "mime_type" in paths or "content" in paths:
        mime_type = message.mime_type if "mime_type" in paths else stored.mime_type
        content = message.content if "content" in paths else store.get_content(tx, kb_id, document_id)
        violations = content_violations(mime_type, content or b"")
        if violations:
            raise InvalidArgument(violations)
        assert content is not None
        values.update(
            mime_type=mime_type, size_bytes=len(content), content_sha256=hashlib.sha256(content).hexdigest()
        )
        if "content" not in paths:
            content = None  # the stored content is ingested again (a new media type)
    if not values:
        return stored
    values["update_time"] = utcnow()
    return store.update_document(tx, kb_id, document_id, values, content)


class KnowledgeRpcs:
    """Knowledge bases, documents and search (a base of ``AgentService``)."""

    _db: Database
    _knowledge: Knowledge

    async def CreateKnowledgeBase(
        self, request: kpb.CreateKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> kpb.KnowledgeBase:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        if request.knowledge_base_id:
            validate_id(request.knowledge_base_id, "knowledge_base_id")
        now = utcnow()
        kb = KnowledgeBaseRow(
            tenant_id=tenant_id,
            id=request.knowledge_base_id or new_id(),
            display_name=request.knowledge_base.display_name,
            description=request.knowledge_base.description,
            embedding_model=self._knowledge.embedder.model,
            chunk_count=0,
            generation=0,
            request_id=request.request_id or None,
            create_time=now,
            update_time=now,
        )
        name = KNOWLEDGE_BASE.format(tenant_id, kb.id)
        note_resource(name)
        created = await self._db.write(tenant_id, store.create_knowledge_base, kb)
        if created is None:
            raise errors.knowledge_base_exists(name)
        return knowledge_base_to_proto(created)

    async def GetKnowledgeBase(
        self, request: kpb.GetKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> kpb.KnowledgeBase:
        tenant_id, kb_id = KNOWLEDGE_BASE.parse(request.name, "name")
        require_tenant(tenant_id)
        kb = await self._db.read(tenant_id, store.get_knowledge_base, kb_id)
        if kb is None:
            raise errors.knowledge_base_not_found(request.name)
        return knowledge_base_to_proto(kb)

    async def ListKnowledgeBases(
        self, request: kpb.ListKnowledgeBasesRequest, context: grpc.aio.ServicerContext
    ) -> kpb.ListKnowledgeBasesResponse:
        (tenant_id,) = TENANT.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_knowledge_bases, page)
        listed, token = listing.messages(knowledge_base_to_proto)
        return kpb.ListKnowledgeBasesResponse(knowledge_bases=listed, next_page_token=token)

    async def UpdateKnowledgeBase(
        self, request: kpb.UpdateKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> kpb.KnowledgeBase:
        name = request.knowledge_base.name
        tenant_id, kb_id = KNOWLEDGE_BASE.parse(name, "knowledge_base.name")
        require_tenant(tenant_id)
        paths = update_paths(request.update_mask, KNOWLEDGE_BASE_FIELDS, KB_IGNORED_FIELDS)
        values: dict[str, Any] = {field: getattr(request.knowledge_base, field) for field in paths}
        values["update_time"] = utcnow()
        note_resource(name)
        updated = await self._db.write(tenant_id, store.update_knowledge_base, kb_id, values)
        if updated is None:
            raise errors.knowledge_base_not_found(name)
        return knowledge_base_to_proto(updated)

    async def DeleteKnowledgeBase(
        self, request: kpb.DeleteKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, kb_id = KNOWLEDGE_BASE.parse(request.name, "name")
        require_tenant(tenant_id)
        try:
            deleted = await self._db.write(tenant_id, store.delete_knowledge_base, kb_id, force=request.force)
        except store.NotEmpty:
            raise errors.knowledge_base_not_empty(request.name) from None
        if not deleted:
            raise errors.knowledge_base_not_found(request.name)
        self._knowledge.searcher.forget(tenant_id, kb_id)
        return empty_pb2.Empty()

    async def SearchKnowledgeBase(
        self, request: kpb.SearchKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> kpb.SearchKnowledgeBaseResponse:
        tenant_id, kb_id = KNOWLEDGE_BASE.parse(request.name, "name")
        require_tenant(tenant_id)
        if not request.query.strip():
            raise InvalidArgument([FieldViolation("query", "must not be blank")])
        k = request.max_results or DEFAULT_MAX_RESULTS
        kb, hits = await self._knowledge.searcher.search(tenant_id, kb_id, request.query, k)
        return kpb.SearchKnowledgeBaseResponse(
            results=[
                kpb.KnowledgeSearchResult(
                    document=DOCUMENT.format(tenant_id, kb.id, hit.document_id),
                    document_display_name=hit.title[:200],
                    section=hit.section,
                    text=hit.text,
                    score=hit.score,
                    chunk_index=hit.position,
                )
                for hit in hits
            ]
        )

    async def CreateDocument(
        self, request: kpb.CreateDocumentRequest, context: grpc.aio.ServicerContext
    ) -> kpb.Document:
        tenant_id, kb_id = KNOWLEDGE_BASE.parse(request.parent, "parent")
        require_tenant(tenant_id)
        violations: list[FieldViolation] = []
        if request.document_id:
            try:
                validate_id(request.document_id, "document_id")
            except InvalidArgument as error:
                violations += error.violations
        content = request.document.content
        violations += content_violations(request.document.mime_type, content)
        if violations:
            raise InvalidArgument(violations)
        now = utcnow()
        document = DocumentRow(
            tenant_id=tenant_id,
            knowledge_base_id=kb_id,
            id=request.document_id or new_id(),
            display_name=request.document.display_name,
            mime_type=request.document.mime_type,
            size_bytes=len(content),
            content_sha256=hashlib.sha256(content).hexdigest(),
            content_generation=1,
            state=DocumentState.PENDING,
            chunks_done=0,
            chunks_total=0,
            error_reason="",
            error_message="",
            lease_owner=None,
            lease_expire_time=None,
            request_id=request.request_id or None,
            create_time=now,
            update_time=now,
        )
        name = DOCUMENT.format(tenant_id, kb_id, document.id)
        note_resource(name)
        try:
            created = await self._db.write(tenant_id, store.create_document, document, content)
        except store.KnowledgeBaseMissing:
            raise errors.knowledge_base_not_found(request.parent) from None
        if created is None:
            raise errors.document_exists(name)
        self._knowledge.ingestor.wake()
        return document_to_proto(created)

    async def GetDocument(
        self, request: kpb.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> kpb.Document:
        tenant_id, kb_id, document_id = DOCUMENT.parse(request.name, "name")
        require_tenant(tenant_id)
        document = await self._db.read(tenant_id, store.get_document, kb_id, document_id)
        if document is None:
            raise errors.document_not_found(request.name)
        return document_to_proto(document)

    async def ListDocuments(
        self, request: kpb.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> kpb.ListDocumentsResponse:
        tenant_id, kb_id = KNOWLEDGE_BASE.parse(request.parent, "parent")
        require_tenant(tenant_id)
        page = page_of(request.page_size, request.page_token, request.parent)
        listing = await self._db.read(tenant_id, store.list_documents, kb_id, page)
        if listing is None:
            raise errors.knowledge_base_not_found(request.parent)
        listed, token = listing.messages(document_to_proto)
        return kpb.ListDocumentsResponse(documents=listed, next_page_token=token)

    async def UpdateDocument(
        self, request: kpb.UpdateDocumentRequest, context: grpc.aio.ServicerContext
    ) -> kpb.Document:
        name = request.document.name
        tenant_id, kb_id, document_id = DOCUMENT.parse(name, "document.name")
        require_tenant(tenant_id)
        paths = update_paths(request.update_mask, DOCUMENT_FIELDS, DOCUMENT_IGNORED_FIELDS)
        note_resource(name)
        updated = await self._db.write(
            tenant_id, _update_document, kb_id, document_id, request.document, paths
        )
        if updated is None:
            raise errors.document_not_found(name)
        if updated.state == DocumentState.PENDING:
            self._knowledge.ingestor.wake()
        return document_to_proto(updated)

    async def DeleteDocument(
        self, request: kpb.DeleteDocumentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id, kb_id, document_id = DOCUMENT.parse(request.name, "name")
        require_tenant(tenant_id)
        if not await self._db.write(tenant_id, store.delete_document, kb_id, document_id, utcnow()):
            raise errors.document_not_found(request.name)
        return empty_pb2.Empty()
