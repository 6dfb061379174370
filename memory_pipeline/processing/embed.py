"""The second step of a batch: embed the prepared rows' chunks in one call.

When the batch call fails, the rows are embedded one by one so that only the rows whose text
cannot be embedded fail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from memory_pipeline.embedding import Embedder
from memory_pipeline.processing.prepare import PreparedRow
from memory_pipeline.storage.row_outcomes import EmbeddedRow, FailedRow

logger = logging.getLogger(__name__)


def _embedded(prepared: PreparedRow, vectors: np.ndarray) -> EmbeddedRow:
    return EmbeddedRow(
        prepared.row.id,
        prepared.search_text,
        prepared.text_truncated,
        prepared.memory_type,
        prepared.occurred_at,
        prepared.content_hash,
        prepared.chunks,
        vectors,
    )


def embed_rows(
    embedder: Embedder, prepared: Sequence[PreparedRow]
) -> tuple[list[EmbeddedRow], list[FailedRow]]:
    """Vectors for every prepared row; rows whose chunks cannot be embedded come back failed."""
    if not prepared:
        return [], []
    flat = [chunk for p in prepared for chunk in p.chunks]
    try:
        vectors = embedder.embed_batch(flat)
    except Exception as batch_error:  # one bad row must not fail its batch: retry row by row
        logger.warning("batch embedding failed (%s); isolating the failing rows", batch_error)
        return _embed_one_by_one(embedder, prepared)
    embedded: list[EmbeddedRow] = []
    start = 0
    for p in prepared:
        embedded.append(_embedded(p, vectors[start : start + len(p.chunks)]))
        start += len(p.chunks)
    return embedded, []


def _embed_one_by_one(
    embedder: Embedder, prepared: Sequence[PreparedRow]
) -> tuple[list[EmbeddedRow], list[FailedRow]]:
    embedded: list[EmbeddedRow] = []
    failed: list[FailedRow] = []
    for p in prepared:
        try:
            embedded.append(_embedded(p, embedder.embed_batch(list(p.chunks))))
        except Exception as exc:
            failed.append(FailedRow(p.row.id, f"embedding failed: {type(exc).__name__}: {exc}"))
    return embedded, failed
