"""The embedder: a sentence-transformers model, loaded once per process.

torch and sentence-transformers are imported only when a model is first loaded, so the Dagster
code server and sensor evaluation (which import the definitions) stay light (DESIGN §7).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from memory_pipeline.embedding.model_source import resolve_model_source

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: Tokens shared by consecutive chunks of a long text, so a sentence cut at a chunk edge
#: is still whole in one of them.
CHUNK_OVERLAP_TOKENS = 32


class Embedder:
    """Turns texts into unit-length vectors with one sentence-transformers model.

    ``model_id`` is what is recorded on rows and in Chroma; ``model_source`` is what gets loaded
    (a hub name or a local folder; by default resolved from ``model_id``).
    """

    def __init__(
        self,
        model_id: str,
        *,
        batch_size: int = 32,
        model_source: str | None = None,
        device: str | None = None,
    ) -> None:
        self.model_id = model_id
        self.batch_size = batch_size
        self.model_source = model_source or resolve_model_source(model_id)
        self.device = device
        self._model: SentenceTransformer | None = None

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # keep stderr for our own messages

            logger.info("loading embedding model %s from %s", self.model_id, self.model_source)
            try:
                self._model = SentenceTransformer(self.model_source, device=self.device)
            except Exception as exc:
                raise RuntimeError(
                    f"cannot load embedding model {self.model_id!r} from {self.model_source!r}: {exc}"
                ) from exc
        return self._model

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            dim = int(self.embed_batch(["dimension probe"]).shape[1])
        return int(dim)

    @property
    def max_tokens(self) -> int:
        """Word pieces per chunk: the model window less its two special tokens."""
        return int(self.model.max_seq_length) - 2

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors for ``texts``, one row each, encoded in batches."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def chunk_text(self, text: str) -> list[str]:
        """Split ``text`` into pieces that each fit the model window, overlapping a little.

        A text that fits is returned whole; nothing of a longer one is dropped.
        """
        window = self.max_tokens
        if len(text) <= window:  # every word piece covers at least one character
            return [text]
        tokenizer = self.model.tokenizer
        encoding = tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        offsets = encoding["offset_mapping"]
        if len(offsets) <= window:
            return [text]
        chunks: list[str] = []
        step = window - CHUNK_OVERLAP_TOKENS
        start = 0
        while start < len(offsets):
            end = min(start + window, len(offsets))
            char_start = 0 if start == 0 else offsets[start][0]
            char_end = len(text) if end == len(offsets) else offsets[end - 1][1]
            chunks.append(text[char_start:char_end])
            if end == len(offsets):
                break
            start += step
        return chunks


@functools.cache
def load_embedder(
    model_id: str, batch_size: int = 32, model_source: str | None = None, device: str | None = None
) -> Embedder:
    """The process's one :class:`Embedder` for these arguments (loaded lazily on first use)."""
    return Embedder(model_id, batch_size=batch_size, model_source=model_source, device=device)
