"""Background ingestion: documents waiting in the database are parsed, chunked, embedded and made READY.

Why the document's own state and not an AIP-151 long-running operation: the document is
a resource that exists from ``CreateDocument`` on and has to carry its ingestion's
outcome anyway (READY or FAILED, and why); an ``Operation`` would be a second resource
saying the same, one more thing to poll and to expire. The project's long work is a
resource with a state (runs); so is this.

Durability: the content is stored with the document, and every replica runs an
:class:`Ingestor` that claims the oldest waiting document of any tenant (PENDING, or
PROCESSING under a lease that expired because its replica stopped), under a lease it
renews with every batch of embeddings. So a document accepted before a restart is
ingested after it, by whichever replica claims it first. Chunks are written only when
the whole document is embedded, in one transaction with its READY state
(:func:`~services.agent.knowledge.store.finish_ingestion`); an interrupted ingestion
starts again from the first chunk. An ingestion whose document changed meanwhile (new
content, deleted, taken over) writes nothing; the new content is claimed next.

A replica ingests one document at a time; a document's batches of
:data:`~services.agent.knowledge.embedding.BATCH_SIZE` chunks move ``chunks_done``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

import numpy as np

from services.agent.knowledge import store
from services.agent.knowledge.chunking import Piece, chunk
from services.agent.knowledge.embedding import BATCH_SIZE, Embedder, EmbeddingFailed
from services.agent.knowledge.models import ChunkRow, DocumentRow
from services.agent.knowledge.parsing import DocumentUnreadable, parse
from services.kit.db import Database
from services.kit.timestamps import utcnow

log = logging.getLogger(__name__)


class _Abandoned(Exception):
    """The document changed under this ingestion; it stops without writing."""


class Ingestor:
    """Claims and ingests waiting documents, one at a time, until stopped.

    Args:
        db: The agent database.
        embedder: Embeds the chunks.
        owner: This replica's lease holder name (unique per process).
        lease_seconds: How long a claim holds without a renewal.
        poll_seconds: How often the database is asked for waiting documents when this
            replica has not been woken (documents created on other replicas).
        clock: The time leases are measured in (tests move it).
    """

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        owner: str,
        *,
        lease_seconds: float = 60.0,
        poll_seconds: float = 2.0,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._db = db
        self._embedder = embedder
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Asks the loop to look for waiting documents now (a document was created or changed here)."""
        self._wake.set()

    async def start(self) -> None:
        """Starts the loop; waiting documents (also from before a restart) are claimed at once."""
        self._task = asyncio.create_task(self._loop(), name="knowledge-ingestion")

    async def stop(self) -> None:
        """Stops the loop; a document being ingested stays PROCESSING until its lease expires."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                worked = await self.ingest_next()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is down, say: try again after the poll interval
                log.exception("knowledge ingestion failed; retrying")
                worked = False
            if worked:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    async def ingest_next(self) -> bool:
        """Claims the oldest waiting document and ingests it.

        Returns:
            Whether a document was claimed.
        """
        claimed = await self._db.system(
            store.claim_document, self._owner, self._clock(), self._lease_seconds, self._embedder.model
        )
        if claimed is None:
            return False
        document, content = claimed
        lease = store.Lease(
            document.tenant_id,
            document.knowledge_base_id,
            document.id,
            document.content_generation,
            self._owner,
        )
        try:
            await self._ingest(document, content, lease)
        except _Abandoned:
            log.info("document %s/%s changed during ingestion", document.knowledge_base_id, document.id)
        except DocumentUnreadable as error:
            await self._fail(lease, "DOCUMENT_UNREADABLE", str(error))
        except EmbeddingFailed as error:
            await self._fail(lease, "EMBEDDING_FAILED", str(error))
        return True

    async def _ingest(self, document: DocumentRow, content: bytes, lease: store.Lease) -> None:
        pieces = await asyncio.to_thread(_pieces, document.mime_type, content)
        if not pieces:
            await self._fail(lease, "DOCUMENT_EMPTY", "the document holds no text")
            return
        total = len(pieces)
        await self._progress(lease, 0, total)
        vectors = []
        for start in range(0, total, BATCH_SIZE):
            batch = pieces[start : start + BATCH_SIZE]
            vectors.append(await self._embedder.embed([piece.embedded_text for piece in batch]))
            await self._progress(lease, start + len(batch), total)
        matrix = np.concatenate(vectors).astype(np.float32, copy=False)
        rows = [
            ChunkRow(
                tenant_id=document.tenant_id,
                knowledge_base_id=document.knowledge_base_id,
                document_id=document.id,
                position=i,
                section=piece.section[:1000],
                text=piece.text,
                embedding=matrix[i].tobytes(),
            )
            for i, piece in enumerate(pieces)
        ]
        if not await self._db.write(document.tenant_id, store.finish_ingestion, lease, rows, self._clock()):
            raise _Abandoned

    async def _progress(self, lease: store.Lease, done: int, total: int) -> None:
        held = await self._db.write(
            lease.tenant_id, store.record_progress, lease, done, total, self._clock(), self._lease_seconds
        )
        if not held:
            raise _Abandoned

    async def _fail(self, lease: store.Lease, reason: str, message: str) -> None:
        await self._db.write(lease.tenant_id, store.fail_ingestion, lease, reason, message, self._clock())


def _pieces(mime_type: str, content: bytes) -> list[Piece]:
    """Parses and chunks a document (CPU work, in a worker thread)."""
    return chunk(parse(mime_type, content))
