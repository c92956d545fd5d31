"""Exact cosine top-k over a knowledge base's chunks, from a per-replica matrix cache.

Chunks are stored with their embeddings as float32 bytes (SQLite and PostgreSQL alike).
A search reads the knowledge base's ``generation`` from the database and looks up the
in-memory matrix of its chunks (one float32 row per chunk, unit rows, so a matrix-vector
product is every chunk's cosine similarity); ``numpy.argpartition`` picks the top k.

Cache invalidation: every change to a knowledge base's chunks bumps its ``generation``
in the same transaction (:mod:`services.agent.knowledge.store`). A cached matrix is
used only while it was built from the generation read for the search (or a later one);
otherwise the chunks are read again. Every replica reads the generation per search, so
one replica's ingestion is seen by every other at once, never a stale or half-replaced
set of chunks. The generation a matrix is labelled with is read before its chunks, so a
change in between only makes the next search reload. The cache holds at most
``max_chunks`` chunks over all knowledge bases; the least recently searched go first.

pgvector: this machine's PostgreSQL has no ``vector`` extension, and the exact search
here is what runs on both databases (at 10,000 chunks of 64 dimensions a whole
``SearchKnowledgeBase`` call over gRPC takes about 3 ms at the median, the product and
top-k well under one; see ``benchmark/knowledge.py``). Where the extension is
installed (``SELECT 1 FROM pg_available_extensions WHERE name = 'vector'``), the
standard route is a ``vector(d)`` column on ``knowledge_chunks`` with an HNSW index and
``ORDER BY embedding <=> :query LIMIT k``; that is not built, since it cannot be tested
here (see the README).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from services.agent.knowledge.embedding import Vectors
from services.agent.knowledge.store import StoredChunks

DEFAULT_MAX_CHUNKS = 500_000


@dataclass(frozen=True, slots=True)
class Hit:
    """One chunk a search found.

    Attributes:
        document_id: Its document.
        title: The document's display name (its ID when it has none).
        position: The chunk's index in the document.
        section: Where in the document it is.
        text: The chunk's text.
        score: Cosine similarity with the query, -1 to 1.
    """

    document_id: str
    title: str
    position: int
    section: str
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class _Matrix:
    generation: int
    vectors: Vectors
    documents: list[str]
    titles: list[str]
    positions: list[int]
    sections: list[str]
    texts: list[str]


def _matrix_of(stored: StoredChunks) -> _Matrix:
    if stored.chunks:
        vectors = np.stack([np.frombuffer(chunk[4], dtype=np.float32) for chunk in stored.chunks])
    else:
        vectors = np.zeros((0, 0), dtype=np.float32)
    return _Matrix(
        generation=stored.generation,
        vectors=vectors,
        documents=[c[0] for c in stored.chunks],
        titles=[stored.titles.get(c[0], c[0]) for c in stored.chunks],
        positions=[c[1] for c in stored.chunks],
        sections=[c[2] for c in stored.chunks],
        texts=[c[3] for c in stored.chunks],
    )


class VectorIndex:
    """Matrices of knowledge bases' chunks, by ``(tenant, knowledge base)``, and exact top-k over them.

    Args:
        max_chunks: The most chunks held over every cached knowledge base.
    """

    def __init__(self, max_chunks: int = DEFAULT_MAX_CHUNKS) -> None:
        self._max_chunks = max_chunks
        self._matrices: collections.OrderedDict[tuple[str, str], _Matrix] = collections.OrderedDict()
        self._held = 0

    def cached(self, tenant_id: str, kb_id: str, generation: int) -> bool:
        """Returns whether a matrix of the knowledge base at ``generation`` or later is in memory.

        Generations only grow, so a later one is at least as fresh as the one read.
        """
        matrix = self._matrices.get((tenant_id, kb_id))
        return matrix is not None and matrix.generation >= generation

    def put(self, tenant_id: str, kb_id: str, stored: StoredChunks) -> None:
        """Caches the matrix of ``stored`` unless a later one is cached; evicts the least recently used."""
        key = (tenant_id, kb_id)
        held = self._matrices.get(key)
        if held is not None and held.generation > stored.generation:  # a slower load of older chunks
            return
        self.drop(tenant_id, kb_id)
        matrix = _matrix_of(stored)
        self._matrices[key] = matrix
        self._held += len(matrix.texts)
        while self._held > self._max_chunks and len(self._matrices) > 1:
            _, evicted = self._matrices.popitem(last=False)
            self._held -= len(evicted.texts)

    def drop(self, tenant_id: str, kb_id: str) -> None:
        """Forgets the knowledge base's matrix (it was deleted)."""
        old = self._matrices.pop((tenant_id, kb_id), None)
        if old is not None:
            self._held -= len(old.texts)

    def search(self, tenant_id: str, kb_id: str, query: Vectors, k: int) -> list[Hit]:
        """Returns the ``k`` chunks closest to the unit vector ``query``, highest score first.

        Ties go by document ID, then position. The matrix must be cached (:meth:`cached`);
        a query of another dimension than the chunks' finds nothing.
        """
        key = (tenant_id, kb_id)
        matrix = self._matrices[key]
        self._matrices.move_to_end(key)
        count = len(matrix.texts)
        if count == 0 or k <= 0 or matrix.vectors.shape[1] != query.shape[0]:
            return []
        scores = matrix.vectors @ query
        k = min(k, count)
        top = np.argpartition(-scores, k - 1)[:k] if k < count else np.arange(count)
        order = sorted(
            top.tolist(), key=lambda i: (-float(scores[i]), matrix.documents[i], matrix.positions[i])
        )
        return [
            Hit(
                document_id=matrix.documents[i],
                title=matrix.titles[i],
                position=matrix.positions[i],
                section=matrix.sections[i],
                text=matrix.texts[i],
                score=round(float(scores[i]), 6),
            )
            for i in order
        ]
