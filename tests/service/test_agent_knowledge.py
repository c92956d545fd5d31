"""Knowledge bases over real gRPC: each format, progress, re-ingestion, search, restarts, bad input.

The mesh's agent embeds with the packaged static model. One replica embeds through an
OpenAI-compatible ``/embeddings`` endpoint: a local server speaking that wire format
(the endpoint is a SaaS in production), which lets a test hold ingestion between two
batches to see its progress.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import uvicorn
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import knowledge_pb2 as kpb
from orchestrall.agent.v1 import resources_pb2 as res
from services.agent.knowledge import store
from services.agent.knowledge.embedding import STATIC_MODEL
from services.agent.knowledge.models import DocumentRow, DocumentState, KnowledgeBaseRow
from services.cli.stack import free_port
from services.kit.db import Database, create_engine
from services.kit.timestamps import utcnow
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_replica,
    error_info,
    field_violations,
    new_tenant,
    run_to_end,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
READY = kpb.Document.STATE_READY


def pdf_of(*pages: str) -> bytes:
    """A minimal valid PDF (1.4) with one line of Helvetica text per page, its xref offsets exact."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R"
            f" /Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


MARKDOWN = b"""# Returns policy

Customers may return any item within 30 days of delivery.

## Refunds

Refunds are paid to the original payment method within 14 days after the returned item arrives.
"""
HTML = (
    b"<html><head><title>Shipping</title><script>var tracking = 'refunds';</script></head><body>"
    b"<h1>Warehouse dispatch</h1><p>The Rotterdam warehouse dispatches orders Monday to Friday.</p>"
    b"<h2>Cut-off</h2><p>Orders placed before 2 pm leave the <b>same day</b>.</p></body></html>"
)
TEXT = b"Password reset\n\nOpen Settings, choose Security and click Reset password.\n"
PDF = pdf_of(
    "Premium plan support answers within 4 hours.", "Invoices are sent on the first day of the month."
)


async def _kb(stub: pb_grpc.AgentServiceStub, tenant: Tenant, kb_id: str, title: str = "Help center") -> Any:
    return await stub.CreateKnowledgeBase(
        kpb.CreateKnowledgeBaseRequest(
            parent=tenant.name,
            knowledge_base_id=kb_id,
            knowledge_base=kpb.KnowledgeBase(display_name=title, description="Customer help articles"),
        ),
        metadata=tenant.metadata,
    )


async def _add(
    stub: pb_grpc.AgentServiceStub,
    tenant: Tenant,
    kb: str,
    doc_id: str,
    mime_type: str,
    content: bytes,
    title: str = "",
) -> kpb.Document:
    return await stub.CreateDocument(
        kpb.CreateDocumentRequest(
            parent=kb,
            document_id=doc_id,
            document=kpb.Document(display_name=title, mime_type=mime_type, content=content),
        ),
        metadata=tenant.metadata,
    )


async def until_done(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, name: str, seconds: float = 30
) -> kpb.Document:
    """Returns the document once it is READY or FAILED (ingestion runs in the background)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        document = await stub.GetDocument(kpb.GetDocumentRequest(name=name), metadata=tenant.metadata)
        if document.state in (READY, kpb.Document.STATE_FAILED):
            return document
        assert asyncio.get_running_loop().time() < deadline, f"{name} is still {document.state}"
        await asyncio.sleep(0.05)


async def _search(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, kb: str, query: str, k: int = 0
) -> list[kpb.KnowledgeSearchResult]:
    answer = await stub.SearchKnowledgeBase(
        kpb.SearchKnowledgeBaseRequest(name=kb, query=query, max_results=k), metadata=tenant.metadata
    )
    return list(answer.results)


async def test_each_format_is_ingested_chunked_and_found(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        kb = await _kb(stub, tenant, "help")
        assert kb.embedding_model == STATIC_MODEL and kb.chunk_count == 0
        added = [
            await _add(stub, tenant, kb.name, "returns", "text/markdown", MARKDOWN, "Returns policy"),
            await _add(stub, tenant, kb.name, "shipping", "text/html; charset=utf-8", HTML, "Shipping"),
            await _add(stub, tenant, kb.name, "password", "text/plain", TEXT),
            await _add(stub, tenant, kb.name, "plans", "application/pdf", PDF, "Plans and billing"),
        ]
        assert [d.state for d in added] == [kpb.Document.STATE_PENDING] * 4
        assert added[3].size_bytes == len(PDF) and added[3].content_sha256 == hashlib.sha256(PDF).hexdigest()
        assert not added[3].content  # write only
        done = [await until_done(stub, tenant, d.name) for d in added]
        # Markdown: a chunk per section; HTML: the same; text: one; PDF: one per page.
        assert [(d.state, d.chunks_done, d.chunks_total) for d in done] == [
            (READY, 2, 2),
            (READY, 2, 2),
            (READY, 1, 1),
            (READY, 2, 2),
        ]
        assert not done[0].HasField("error")
        kb = await stub.GetKnowledgeBase(kpb.GetKnowledgeBaseRequest(name=kb.name), metadata=tenant.metadata)
        assert kb.chunk_count == 7
        refunds = await _search(stub, tenant, kb.name, "refunds paid to the original payment method", 3)
        dispatch = await _search(stub, tenant, kb.name, "when does the warehouse dispatch orders", 1)
        invoices = await _search(stub, tenant, kb.name, "when are invoices sent", 1)
        password = await _search(stub, tenant, kb.name, "reset password settings", 1)
    top = refunds[0]
    assert (top.document, top.document_display_name, top.section, top.chunk_index) == (
        f"{kb.name}/documents/returns",
        "Returns policy",
        "Returns policy > Refunds",
        1,
    )
    assert top.text.startswith("Refunds\n\nRefunds are paid to the original payment method within 14 days")
    assert len(refunds) == 3 and refunds[0].score > refunds[1].score >= refunds[2].score
    assert -1 <= refunds[2].score < refunds[0].score <= 1
    assert (dispatch[0].document_display_name, dispatch[0].section) == ("Shipping", "Warehouse dispatch")
    assert "same day" not in dispatch[0].text and "tracking" not in dispatch[0].text  # no script text
    assert (invoices[0].document_display_name, invoices[0].section) == ("Plans and billing", "page 2")
    assert invoices[0].text == "Invoices are sent on the first day of the month."
    # A document without a display name is cited by its ID.
    assert (password[0].document_display_name, password[0].section) == ("password", "")


CORPUS = {
    "returns": "Returns are accepted within 30 days. Refunds reach the original payment method in 14 days.",
    "shipping": "Orders ship from the Rotterdam warehouse Monday to Friday, same-day dispatch before 2 pm.",
    "support": "The premium plan includes priority support with a 4 hour response time.",
    "security": "Two-factor authentication can be switched on under Settings, Security.",
    "hazmat": "Lithium batteries need a UN3480 label and cannot travel as air cargo on passenger aircraft.",
}


async def test_search_ranks_the_relevant_chunk_first(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        kb = await _kb(stub, tenant, "corpus")
        for doc_id, text in CORPUS.items():
            await until_done(
                stub, tenant, (await _add(stub, tenant, kb.name, doc_id, "text/plain", text.encode())).name
            )
        queries = {
            "returns": "how many days do refunds take",
            "shipping": "which days do orders ship from the warehouse",
            "support": "premium plan support response time",
            "security": "switch on two-factor authentication",
            "hazmat": "lithium batteries air cargo label",
        }
        for expected, query in queries.items():
            results = await _search(stub, tenant, kb.name, query)
            assert results[0].document == f"{kb.name}/documents/{expected}", (query, results[0])
            assert len(results) == 5 and [r.score for r in results] == sorted(
                (r.score for r in results), reverse=True
            )


async def test_reingesting_a_document_replaces_its_chunks(mesh: Mesh, agent_db: Database) -> None:
    tenant = await new_tenant(mesh)
    first = "\n\n".join(f"Falcon paragraph {i}: the falcon {'soars ' * 120}" for i in range(3))
    second = "Osprey notes: the osprey dives for fish."
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        kb = await _kb(stub, tenant, "birds")
        doc = await _add(stub, tenant, kb.name, "notes", "text/plain", first.encode(), "Bird notes")
        v1 = await until_done(stub, tenant, doc.name)
        assert v1.chunks_total == 3
        assert "falcon" in (await _search(stub, tenant, kb.name, "falcon soars", 1))[0].text
        changed = await stub.UpdateDocument(
            kpb.UpdateDocumentRequest(
                document=kpb.Document(name=doc.name, content=second.encode()),
                update_mask=field_mask_pb2.FieldMask(paths=["content"]),
            ),
            metadata=tenant.metadata,
        )
        assert (changed.state, changed.chunks_done, changed.chunks_total) == (
            kpb.Document.STATE_PENDING,
            0,
            0,
        )
        assert changed.content_sha256 == hashlib.sha256(second.encode()).hexdigest()
        assert changed.mime_type == "text/plain" and changed.display_name == "Bird notes"
        v2 = await until_done(stub, tenant, doc.name)
        results = await _search(stub, tenant, kb.name, "falcon soars", 10)
        kb = await stub.GetKnowledgeBase(kpb.GetKnowledgeBaseRequest(name=kb.name), metadata=tenant.metadata)
        # Renaming only does not ingest again.
        renamed = await stub.UpdateDocument(
            kpb.UpdateDocumentRequest(
                document=kpb.Document(name=doc.name, display_name="Raptor notes"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=tenant.metadata,
        )
    assert (v2.state, v2.chunks_total) == (READY, 1)
    assert [r.text for r in results] == [second]
    assert kb.chunk_count == 1
    assert await agent_db.read(tenant.id, store.count_chunks, "birds", "notes") == 1
    assert (renamed.state, renamed.display_name, renamed.content_sha256) == (
        READY,
        "Raptor notes",
        v2.content_sha256,
    )


@dataclass
class EmbeddingsServer:
    """An OpenAI-compatible ``POST /v1/embeddings``: word-hashing embeddings; it can hold requests."""

    url: str
    requests: list[int] = field(default_factory=list)
    hold_after: int = 1_000_000
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def vector(self, text: str) -> list[float]:
        values = [0.0] * 1024
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            values[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 1024] += 1.0
        return values


def _embeddings_app(server: EmbeddingsServer) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        server.requests.append(len(texts))
        if len(server.requests) > server.hold_after:
            await server.release.wait()
        data = [
            {"object": "embedding", "index": i, "embedding": server.vector(t)} for i, t in enumerate(texts)
        ]
        answer = {
            "object": "list",
            "data": data,
            "model": request["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
        encoded = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": encoded})

    return app


@pytest.fixture
async def embeddings() -> AsyncIterator[EmbeddingsServer]:
    port = free_port()
    server = EmbeddingsServer(url=f"http://127.0.0.1:{port}/v1")
    config = uvicorn.Config(
        _embeddings_app(server), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    while not running.started:
        await asyncio.sleep(0.01)
    yield server
    server.release.set()
    running.should_exit = True
    await task


async def test_ingestion_reports_progress_per_batch_through_an_openai_endpoint(
    mesh: Mesh, model_url: str, embeddings: EmbeddingsServer
) -> None:
    tenant = await new_tenant(mesh)
    embeddings.hold_after = 1  # the second batch waits
    replica = await agent_replica(
        mesh,
        model_url,
        embedding_base_url=embeddings.url,
        embedding_model="hash-1024",
        knowledge_poll_seconds=0.05,
    )
    paragraphs = [
        f"Section {i} of the manual: " + " ".join(f"word{i}x{j}" for j in range(60)) for i in range(70)
    ]
    try:
        async with agent_channel(mesh, replica) as channel, mesh.channel("agent") as main_channel:
            stub = pb_grpc.AgentServiceStub(channel)
            kb = await _kb(stub, tenant, "manual")
            assert kb.embedding_model == "openai/hash-1024"
            doc = await _add(stub, tenant, kb.name, "manual", "text/plain", "\n\n".join(paragraphs).encode())
            deadline = asyncio.get_running_loop().time() + 10
            while (
                midway := await stub.GetDocument(
                    kpb.GetDocumentRequest(name=doc.name), metadata=tenant.metadata
                )
            ).chunks_done == 0:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            embeddings.release.set()
            done = await until_done(stub, tenant, doc.name)
            found = await _search(stub, tenant, kb.name, "word41x7 word41x8 word41x9 word41x10", 1)
            with pytest.raises(grpc.aio.AioRpcError) as other_model:
                await _search(pb_grpc.AgentServiceStub(main_channel), tenant, kb.name, "word41x7")
    finally:
        await replica.stop(0)
    assert (midway.state, midway.chunks_done, midway.chunks_total) == (kpb.Document.STATE_PROCESSING, 64, 70)
    assert (done.state, done.chunks_done, done.chunks_total) == (READY, 70, 70)
    assert embeddings.requests[:2] == [64, 6]  # a batch per 64 chunks, then the query
    assert found[0].chunk_index == 41
    # The mesh's replica embeds with the static model: it neither ingests nor searches this one.
    assert other_model.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(other_model.value).reason == "EMBEDDING_MODEL_CHANGED"


async def test_documents_waiting_when_replicas_stopped_are_ingested_after_a_restart(
    mesh: Mesh, model_url: str
) -> None:
    """A document accepted by a replica that stopped before ingesting it, and one a stopped replica held."""
    tenant = await new_tenant(mesh)
    now = utcnow()
    admin = Database(create_engine(mesh.config.settings("agent"), "agent", admin=True))
    kb = KnowledgeBaseRow(tenant.id, "restart", "Restart", "", STATIC_MODEL, 0, 0, None, now, now)

    def document(doc_id: str, state: DocumentState, lease: dt.datetime | None) -> DocumentRow:
        return DocumentRow(
            tenant.id, "restart", doc_id, "", "text/plain", 10, "", 1, state, 0, 0, "", "",
            "gone-replica" if lease else None, lease, None, now, now,
        )  # fmt: skip

    try:
        await admin.write(tenant.id, store.create_knowledge_base, kb)
        await admin.write(
            tenant.id,
            store.create_document,
            document("pending", DocumentState.PENDING, None),
            b"Kestrel hovering.",
        )
        leased = document("leased", DocumentState.PROCESSING, now + dt.timedelta(minutes=10))
        await admin.write(tenant.id, store.create_document, leased, b"Harrier gliding.")
    finally:
        await admin.close()
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        pending = await until_done(stub, tenant, f"{tenant.name}/knowledgeBases/restart/documents/pending")
        still = await stub.GetDocument(
            kpb.GetDocumentRequest(name=f"{tenant.name}/knowledgeBases/restart/documents/leased"),
            metadata=tenant.metadata,
        )
    # A replica whose clock is past the stopped replica's lease takes its document over.
    later = await agent_replica(
        mesh, model_url, clock=lambda: utcnow() + dt.timedelta(minutes=11), knowledge_poll_seconds=0.05
    )
    try:
        async with agent_channel(mesh, later) as channel:
            taken = await until_done(pb_grpc.AgentServiceStub(channel), tenant, still.name)
    finally:
        await later.stop(0)
    assert (pending.state, pending.chunks_total) == (READY, 1)
    assert still.state == kpb.Document.STATE_PROCESSING  # its lease holds for the replicas on real time
    assert (taken.state, taken.chunks_total) == (READY, 1)


async def test_bad_documents_are_refused_with_field_violations_or_fail_ingestion(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    md = tenant.metadata
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        kb = await _kb(stub, tenant, "strict")
        refused = []
        for mime_type, content in (
            ("image/png", b"\x89PNG\r\n"),
            ("text/plain", b""),
            ("text/plain", b"a" * 655_361),
            ("text/plain", b"\xff\xfe caf\xe9"),
            ("text/markdown", b" \n\n \t"),
            ("application/pdf", b"<html>not a pdf</html>"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await _add(stub, tenant, kb.name, "bad", mime_type, content)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            refused.append(field_violations(error.value))
        with pytest.raises(grpc.aio.AioRpcError) as bad_id:
            await _add(stub, tenant, kb.name, "Bad_ID", "text/plain", b"fine")
        listed = await stub.ListDocuments(kpb.ListDocumentsRequest(parent=kb.name), metadata=md)
        broken = await _add(
            stub, tenant, kb.name, "broken", "application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nthis is no pdf"
        )
        blank = await _add(
            stub, tenant, kb.name, "blank", "text/html", b"<html><script>only()</script></html>"
        )
        failed = [await until_done(stub, tenant, d.name) for d in (broken, blank)]
        with pytest.raises(grpc.aio.AioRpcError) as missing_kb:
            await _add(stub, tenant, f"{tenant.name}/knowledgeBases/nope", "doc", "text/plain", b"fine")
        with pytest.raises(grpc.aio.AioRpcError) as blank_query:
            await _search(stub, tenant, kb.name, "   ")
        with pytest.raises(grpc.aio.AioRpcError) as bad_mask:
            await stub.UpdateDocument(
                kpb.UpdateDocumentRequest(
                    document=kpb.Document(name=broken.name),
                    update_mask=field_mask_pb2.FieldMask(paths=["chunks"]),
                ),
                metadata=md,
            )
        with pytest.raises(grpc.aio.AioRpcError) as bad_update:
            await stub.UpdateDocument(
                kpb.UpdateDocumentRequest(
                    document=kpb.Document(name=broken.name, mime_type="text/plain"),
                    update_mask=field_mask_pb2.FieldMask(paths=["mime_type"]),
                ),
                metadata=md,
            )
        with pytest.raises(grpc.aio.AioRpcError) as not_empty:
            await stub.DeleteKnowledgeBase(kpb.DeleteKnowledgeBaseRequest(name=kb.name), metadata=md)
        await stub.DeleteKnowledgeBase(kpb.DeleteKnowledgeBaseRequest(name=kb.name, force=True), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await _search(stub, tenant, kb.name, "anything")
    assert refused == [
        ["document.mime_type"],
        ["document.content"],
        ["document.content"],
        ["document.content"],
        ["document.content"],
        ["document.content"],
    ]
    assert field_violations(bad_id.value) == ["document_id"] and not listed.documents
    assert [(d.state, error_reason(d)) for d in failed] == [
        (kpb.Document.STATE_FAILED, "DOCUMENT_UNREADABLE"),
        (kpb.Document.STATE_FAILED, "DOCUMENT_EMPTY"),
    ]
    assert failed[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert missing_kb.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(missing_kb.value).reason == "KNOWLEDGE_BASE_NOT_FOUND"
    assert field_violations(blank_query.value) == ["query"]
    assert field_violations(bad_mask.value) == ["update_mask"]
    # The stored PDF bytes are not UTF-8 text: the new media type is refused, nothing changes.
    assert field_violations(bad_update.value) == ["document.content"]
    assert error_info(not_empty.value).reason == "KNOWLEDGE_BASE_NOT_EMPTY"
    assert error_info(gone.value).reason == "KNOWLEDGE_BASE_NOT_FOUND"


def error_reason(document: kpb.Document) -> str:
    """The ErrorInfo reason of a failed document's ``error``."""
    info = error_details_pb2.ErrorInfo()
    assert document.error.details[0].Unpack(info)
    return info.reason


async def test_another_tenant_cannot_read_search_or_use_a_knowledge_base(
    mesh: Mesh, agent_db: Database
) -> None:
    owner, other = await new_tenant(mesh), await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        kb = await _kb(stub, owner, "private")
        doc = await _add(stub, owner, kb.name, "secret", "text/plain", b"The vault code is 4711.")
        await until_done(stub, owner, doc.name)
        attempts = [
            stub.GetKnowledgeBase(kpb.GetKnowledgeBaseRequest(name=kb.name), metadata=other.metadata),
            stub.SearchKnowledgeBase(
                kpb.SearchKnowledgeBaseRequest(name=kb.name, query="vault code"), metadata=other.metadata
            ),
            stub.GetDocument(kpb.GetDocumentRequest(name=doc.name), metadata=other.metadata),
            stub.ListDocuments(kpb.ListDocumentsRequest(parent=kb.name), metadata=other.metadata),
        ]
        codes = []
        for attempt in attempts:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await attempt
            codes.append((error.value.code(), error_info(error.value).reason))
        with pytest.raises(grpc.aio.AioRpcError) as borrowed:
            await stub.CreateAgent(
                pb.CreateAgentRequest(
                    parent=other.name,
                    agent=res.Agent(instructions="Answer.", tools=[kb.name]),
                    agent_id="thief",
                ),
                metadata=other.metadata,
            )
        own = await stub.ListKnowledgeBases(
            kpb.ListKnowledgeBasesRequest(parent=other.name), metadata=other.metadata
        )
    assert codes == [(grpc.StatusCode.PERMISSION_DENIED, "TENANT_MISMATCH")] * 4
    assert field_violations(borrowed.value) == ["agent.tools[0]"] and not own.knowledge_bases
    # Even a store query for the owner's rows, bound to the other tenant, finds nothing.
    assert await agent_db.read(other.id, store.load_chunks, "private") is None
    assert await agent_db.read(other.id, store.count_chunks, "private", "secret") == 0


async def test_an_agent_searches_its_knowledge_base_and_cites_the_document(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        kb = await _kb(stub, tenant, "policies", "Store policies")
        for doc_id, text in CORPUS.items():
            title = f"{doc_id.capitalize()} policy"
            await until_done(
                stub,
                tenant,
                (await _add(stub, tenant, kb.name, doc_id, "text/plain", text.encode(), title)).name,
            )
        agent = await stub.CreateAgent(
            pb.CreateAgentRequest(
                parent=tenant.name,
                agent_id="helpdesk",
                agent=res.Agent(
                    instructions="Look it up with knowledge_search, then answer and name the document.",
                    tools=[kb.name],
                    tool_choice=res.TOOL_CHOICE_REQUIRED,
                    temperature=0,
                    max_output_tokens=64,
                ),
            ),
            metadata=tenant.metadata,
        )
        run = await run_to_end(
            stub,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="How many days do refunds take?")),
            metadata=tenant.metadata,
        )
    assert run.state == res.Run.STATE_SUCCEEDED, run.error
    call = run.tool_calls[0]
    assert call.tool == kb.name and not call.failed
    result = json.loads(call.result)
    assert result["knowledge_base"] == "Store policies"
    assert result["results"][0]["document"] == "Returns policy"
    assert result["results"][0]["document_name"] == f"{kb.name}/documents/returns"
    # The run cites what the model was given: every passage of the call, the right one first.
    assert [(c.tool_call_id, c.document, c.document_display_name, c.score) for c in run.citations] == [
        (call.id, r["document_name"], r["document"], r["score"]) for r in result["results"]
    ]
    top = run.citations[0]
    assert (top.document, top.document_display_name, top.chunk_index) == (
        f"{kb.name}/documents/returns",
        "Returns policy",
        0,
    )
    assert "14" in run.output, run.output
