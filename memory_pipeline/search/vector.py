"""The dense retriever: each query's nearest memories by cosine, from Chroma or pgvector."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import psycopg
from psycopg import sql

from memory_pipeline.search.filters import where_to_sql
from memory_pipeline.search.request import SearchRequest
from memory_pipeline.settings import EXACT_SEARCH_MAX_VECTORS
from memory_pipeline.storage import search_reads
from memory_pipeline.vector_store import ChromaVectorStore, VectorStoreUnavailable

logger = logging.getLogger(__name__)


def best_per_memory(pairs: Iterable[tuple[int, float]]) -> dict[int, float]:
    """The best similarity of each memory among ``(log_id, similarity)`` chunk hits."""
    best: dict[int, float] = {}
    for log_id, sim in pairs:
        if sim > best.get(log_id, -2.0):
            best[log_id] = sim
    return best


def vector_candidates(
    conn: psycopg.Connection,
    store: ChromaVectorStore | None,
    request: SearchRequest,
    model_id: str,
    vectors: np.ndarray,
    n: int,
    exact_max_vectors: int = EXACT_SEARCH_MAX_VECTORS,
) -> list[dict[int, float]]:
    """Best cosine similarity per memory among each query's ``n`` nearest vectors.

    ``auto``: a tenant with at most ``exact_max_vectors`` chunk vectors is searched by an exact
    scan of its rows in Postgres (no cold Chroma collection to load, docs/decisions/0204), a
    larger one as ``chroma``. ``chroma``: from Chroma, and pgvector when Chroma cannot be
    reached (logged). ``pgvector``: its HNSW index. Chroma returns ids and similarities only:
    each memory's tenant is checked in Postgres before anything is returned.
    """
    tenant, where = request.tenant, request.where
    small = request.backend == "auto" and (
        search_reads.tenant_vector_count(conn, tenant.key, model_id, exact_max_vectors + 1)
        <= exact_max_vectors
    )
    if not small and request.backend in ("auto", "chroma"):
        if store is None:
            logger.warning(
                "no Chroma server reachable: searching pgvector instead (tenant %s)", tenant
            )
        else:
            try:
                hits = store.query(tenant, model_id, vectors, n, where, with_metadata=False)
            except VectorStoreUnavailable as exc:
                logger.warning("Chroma unreachable, falling back to pgvector: %s", exc)
            else:
                if hits is None:  # the tenant has no collection: nothing embedded yet
                    return [{} for _ in range(len(vectors))]
                return [best_per_memory((h.log_id, h.similarity) for h in q) for q in hits]
    condition: sql.Composable | None = where_to_sql(where) if where else None
    # The exact scan answers as deep as Chroma (the ranking was tuned on lists that deep);
    # HNSW's vectors are chunks, several per memory: it is asked for more than n.
    nearest, depth = (
        (search_reads.exact_nearest, n) if small else (search_reads.pgvector_nearest, n * 2)
    )
    return [
        best_per_memory(
            (h.log_id, h.similarity)
            for h in nearest(conn, tenant.key, model_id, vector, depth, condition)
        )
        for vector in vectors
    ]
