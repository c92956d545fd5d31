"""Searching a knowledge base: the query embedded, the cached matrix checked against the generation, top-k."""

from __future__ import annotations

import asyncio

from orchestrall.agent.v1 import knowledge_pb2 as kpb
from services.agent.knowledge import errors, store
from services.agent.knowledge.embedding import Embedder, EmbeddingFailed
from services.agent.knowledge.index import Hit, VectorIndex
from services.agent.knowledge.models import KnowledgeBaseRow
from services.kit.db import Database
from services.kit.names import ResourceName

KNOWLEDGE_BASE = ResourceName.of(kpb.KnowledgeBase)
DOCUMENT = ResourceName.of(kpb.Document)


class Searcher:
    """Searches knowledge bases for the RPC and the ``knowledge_search`` tool.

    Args:
        db: The agent database.
        embedder: Embeds queries with the model the chunks were embedded with.
        index: The per-replica matrix cache.
    """

    def __init__(self, db: Database, embedder: Embedder, index: VectorIndex) -> None:
        self._db = db
        self._embedder = embedder
        self._index = index

    @property
    def embedding_model(self) -> str:
        """The deployment's embedding model."""
        return self._embedder.model

    async def search(
        self, tenant_id: str, kb_id: str, query: str, k: int
    ) -> tuple[KnowledgeBaseRow, list[Hit]]:
        """Returns the knowledge base and its ``k`` chunks closest to ``query``, highest score first.

        Raises:
            NotFound: ``KNOWLEDGE_BASE_NOT_FOUND``.
            FailedPrecondition: ``EMBEDDING_MODEL_CHANGED``, the knowledge base was
                embedded with another model than the deployment's.
            Unavailable: ``EMBEDDING_FAILED``.
        """
        name = KNOWLEDGE_BASE.format(tenant_id, kb_id)
        kb = await self._db.read(tenant_id, store.get_knowledge_base, kb_id)
        if kb is None:
            raise errors.knowledge_base_not_found(name)
        if kb.embedding_model != self._embedder.model:
            raise errors.embedding_model_changed(name, kb.embedding_model, self._embedder.model)
        try:
            if self._index.cached(tenant_id, kb_id, kb.generation):
                vectors = await self._embedder.embed([query])
            else:
                vectors, stored = await asyncio.gather(
                    self._embedder.embed([query]), self._db.read(tenant_id, store.load_chunks, kb_id)
                )
                if stored is None:
                    raise errors.knowledge_base_not_found(name)
                self._index.put(tenant_id, kb_id, stored)
        except EmbeddingFailed as error:
            raise errors.embedding_failed(str(error)) from None
        return kb, self._index.search(tenant_id, kb_id, vectors[0], k)

    def forget(self, tenant_id: str, kb_id: str) -> None:
        """Drops the knowledge base's cached matrix (it was deleted)."""
        self._index.drop(tenant_id, kb_id)
