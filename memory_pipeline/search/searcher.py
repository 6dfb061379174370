"""Tenant-scoped search over Chroma or pgvector vectors, Postgres full text, or both fused.

Every query is scoped to one tenant three times over: the tenant's own collection, a tenant
``where`` on every Chroma query, and ``tenant_key`` on every SQL query.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from psycopg import sql

from memory_pipeline.embedding import Embedder
from memory_pipeline.search.filters import validate_where_filter, where_to_sql
from memory_pipeline.search.result import SearchResult
from memory_pipeline.storage.database import Database
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, VectorStoreUnavailable

logger = logging.getLogger(__name__)

SearchMode = Literal["vector", "keyword", "hybrid"]
SearchBackend = Literal["chroma", "pgvector"]
SEARCH_MODES: tuple[str, ...] = ("vector", "keyword", "hybrid")
SEARCH_BACKENDS: tuple[str, ...] = ("chroma", "pgvector")
DEFAULT_MODE: SearchMode = "hybrid"
DEFAULT_BACKEND: SearchBackend = "chroma"
#: Candidates fetched per retriever before fusion, decay and filters cut to ``limit``.
CANDIDATE_FACTOR = 5
MIN_CANDIDATES = 50
MAX_LIMIT = 1000
#: Share of the vector retriever in hybrid fusion (the rest is keyword); see ``make eval``.
HYBRID_VECTOR_WEIGHT = 0.5


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _min_max(scores: Mapping[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo < 1e-12:
        return {k: 1.0 for k in scores}
    return {k: (v - lo) / (hi - lo) for k, v in scores.items()}


class MemorySearch:
    """Search over one database and Chroma server with one embedding model."""

    def __init__(self, db: Database, store: ChromaVectorStore | None, embedder: Embedder) -> None:
        self.db = db
        self.store = store
        self.embedder = embedder

    # ----------------------------------------------------------------------------- public API
    def search_similar_memories(
        self,
        query: str,
        user_id: str,
        project_id: str,
        limit: int = 10,
        where_filter: dict[str, Any] | None = None,
        min_similarity: float = 0.0,
        enable_temporal_decay: bool = False,
        half_life_days: float = 30.0,
        *,
        mode: str | None = None,
        backend: str | None = None,
        memory_types: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[SearchResult]:
        """The tenant's memories most similar to ``query``, best first (DESIGN §5)."""
        return self.search_many(
            [query], user_id, project_id, limit, where_filter, min_similarity,
            enable_temporal_decay, half_life_days, mode=mode, backend=backend,
            memory_types=memory_types, since=since, until=until,
        )[0]

    def search_many(
        self,
        queries: Sequence[str],
        user_id: str,
        project_id: str,
        limit: int = 10,
        where_filter: dict[str, Any] | None = None,
        min_similarity: float = 0.0,
        enable_temporal_decay: bool = False,
        half_life_days: float = 30.0,
        *,
        mode: str | None = None,
        backend: str | None = None,
        memory_types: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[list[SearchResult]]:
        """One result list per query, for one tenant; the queries are embedded in one call."""
        tenant = Tenant(user_id, project_id)
        if isinstance(queries, str):
            raise ValueError("queries must be a list of strings, not one string")
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise ValueError("a search query must be a non-empty string")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}")
        if not -1.0 <= float(min_similarity) <= 1.0:
            raise ValueError("min_similarity must lie between -1 and 1")
        if enable_temporal_decay and not half_life_days > 0:
            raise ValueError("half_life_days must be positive")
        mode = mode or DEFAULT_MODE
        backend = backend or DEFAULT_BACKEND
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
        if backend not in SEARCH_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(SEARCH_BACKENDS)}")
        where = self._combined_filter(where_filter, memory_types, since, until)
        if not queries:
            return []
        if not self._tenant_exists(tenant):
            return [[] for _ in queries]

        n_candidates = max(limit * CANDIDATE_FACTOR, MIN_CANDIDATES)
        vector_scores: list[dict[int, float]] = [{} for _ in queries]
        keyword_scores: list[dict[int, float]] = [{} for _ in queries]
        if mode in ("vector", "hybrid"):
            vectors = self.embedder.embed_batch(list(queries))
            vector_scores = self._vector_candidates(tenant, vectors, n_candidates, where, backend)
        if mode in ("keyword", "hybrid"):
            keyword_scores = [
                self._keyword_candidates(tenant, q, n_candidates, where) for q in queries
            ]
        if mode == "hybrid":
            # keyword-only hits still get their true cosine similarity (min_similarity, output)
            for i, (vec, kw) in enumerate(zip(vector_scores, keyword_scores, strict=True)):
                missing = set(kw) - set(vec)
                if missing:
                    vector_scores[i] = {**vec, **self._exact_similarities(tenant, vectors[i], missing)}

        ids = {i for scores in (*vector_scores, *keyword_scores) for i in scores}
        rows = self._load_rows(tenant, ids)
        now = datetime.now(UTC)
        out: list[list[SearchResult]] = []
        for vec, kw in zip(vector_scores, keyword_scores, strict=True):
            out.append(self._rank(mode, vec, kw, rows, limit, min_similarity,
                                  enable_temporal_decay, half_life_days, now))
        return out

    # --------------------------------------------------------------------------- internals
    @staticmethod
    def _combined_filter(
        where_filter: dict[str, Any] | None,
        memory_types: Sequence[str] | None,
        since: datetime | None,
        until: datetime | None,
    ) -> dict[str, Any] | None:
        parts: list[dict[str, Any]] = []
        if where_filter is not None:
            validate_where_filter(where_filter)
            parts.append(where_filter)
        if memory_types is not None:
            if isinstance(memory_types, str) or not memory_types:
                raise ValueError("memory_types must be a non-empty list of memory types")
            parts.append({"memory_type": {"$in": [str(t) for t in memory_types]}})
        since_dt, until_dt = _aware(since, "since"), _aware(until, "until")
        if since_dt is not None:
            parts.append({"occurred_at": {"$gte": since_dt.timestamp()}})
        if until_dt is not None:
            parts.append({"occurred_at": {"$lte": until_dt.timestamp()}})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def _tenant_exists(self, tenant: Tenant) -> bool:
        with self.db.connection() as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM memory_tenant WHERE tenant_key = %s", (tenant.key,)
                ).fetchone()
                is not None
            )

    def _vector_candidates(
        self,
        tenant: Tenant,
        vectors: np.ndarray,
        n: int,
        where: dict[str, Any] | None,
        backend: str,
    ) -> list[dict[int, float]]:
        if backend == "chroma":
            if self.store is None:
                logger.warning("no Chroma server configured: searching pgvector instead")
            else:
                try:
                    hits = self.store.query(tenant, self.embedder.model_id, vectors, n, where)
                except VectorStoreUnavailable as exc:
                    logger.warning("Chroma unreachable, falling back to pgvector: %s", exc)
                else:
                    if hits is None:
                        return [{} for _ in range(len(vectors))]
                    return [self._best_per_memory((h.log_id, h.similarity) for h in q) for q in hits]
        return [self._pgvector_candidates(tenant, v, n, where) for v in vectors]

    @staticmethod
    def _best_per_memory(pairs: Any) -> dict[int, float]:
        best: dict[int, float] = {}
        for log_id, sim in pairs:
            if sim > best.get(log_id, -2.0):
                best[log_id] = sim
        return best

    def _pgvector_candidates(
        self, tenant: Tenant, vector: np.ndarray, n: int, where: dict[str, Any] | None
    ) -> dict[int, float]:
        dim = int(vector.shape[0])
        cast = sql.SQL("vector({})").format(sql.SQL(str(dim)))
        condition = where_to_sql(where) if where else sql.SQL("true")
        # Iterative index scans keep HNSW recall high under the tenant filter (DESIGN §7).
        statement = sql.SQL(
            """SELECT log_id, similarity FROM (
                   SELECT v.log_id, 1 - (v.embedding::{cast} <=> %(q)s::{cast}) AS similarity
                   FROM memory_vector v JOIN memory_log m ON m.id = v.log_id
                   WHERE v.embedding_model = %(model)s AND v.tenant_key = %(tenant)s
                     AND m.tenant_key = %(tenant)s AND m.status = 'embedded'
                     AND m.embedding_model = %(model)s AND {condition}
                   ORDER BY v.embedding::{cast} <=> %(q)s::{cast}
                   LIMIT %(n)s) AS hits
               ORDER BY similarity DESC"""
        ).format(cast=cast, condition=condition)
        with self.db.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            conn.execute("SET LOCAL hnsw.ef_search = 200")
            rows = conn.execute(
                statement,
                {"q": vector, "model": self.embedder.model_id, "tenant": tenant.key, "n": n * 3},
            ).fetchall()
        return self._best_per_memory((r["log_id"], float(r["similarity"])) for r in rows)

    def _exact_similarities(
        self, tenant: Tenant, vector: np.ndarray, log_ids: set[int]
    ) -> dict[int, float]:
        dim = int(vector.shape[0])
        cast = sql.SQL("vector({})").format(sql.SQL(str(dim)))
        statement = sql.SQL(
            """SELECT log_id, max(1 - (embedding::{cast} <=> %(q)s::{cast})) AS similarity
               FROM memory_vector
               WHERE log_id = ANY(%(ids)s) AND tenant_key = %(tenant)s
                 AND embedding_model = %(model)s
               GROUP BY log_id"""
        ).format(cast=cast)
        with self.db.connection() as conn:
            rows = conn.execute(
                statement,
                {"q": vector, "ids": list(log_ids), "tenant": tenant.key,
                 "model": self.embedder.model_id},
            ).fetchall()
        return {int(r["log_id"]): float(r["similarity"]) for r in rows}

    def _keyword_candidates(
        self, tenant: Tenant, query: str, n: int, where: dict[str, Any] | None
    ) -> dict[int, float]:
        condition = where_to_sql(where) if where else sql.SQL("true")
        # Any query term may match (OR), ranked by ts_rank_cd: questions rarely contain
        # every word of the memory that answers them.
        statement = sql.SQL(
            """WITH q AS (
                   SELECT nullif(replace(plainto_tsquery('english', %(query)s)::text, '&', '|'), '')
                          AS text)
               SELECT m.id AS log_id, ts_rank_cd(m.search_tsv, q.text::tsquery, 1) AS rank
               FROM memory_log m, q
               WHERE q.text IS NOT NULL AND m.tenant_key = %(tenant)s AND m.status = 'embedded'
                 AND m.search_tsv @@ q.text::tsquery AND {condition}
               ORDER BY rank DESC, m.id
               LIMIT %(n)s"""
        ).format(condition=condition)
        with self.db.connection() as conn:
            rows = conn.execute(statement, {"query": query, "tenant": tenant.key, "n": n}).fetchall()
        return {int(r["log_id"]): float(r["rank"]) for r in rows}

    def _load_rows(self, tenant: Tenant, ids: set[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        with self.db.connection() as conn:
            rows = conn.execute(
                """SELECT id, external_id, search_text, memory_type, occurred_at, created_at,
                          raw_data
                   FROM memory_log
                   WHERE id = ANY(%s) AND tenant_key = %s AND status = 'embedded'""",
                (list(ids), tenant.key),
            ).fetchall()
        return {int(r["id"]): r for r in rows}

    @staticmethod
    def _rank(
        mode: str,
        vector_scores: dict[int, float],
        keyword_scores: dict[int, float],
        rows: Mapping[int, Mapping[str, Any]],
        limit: int,
        min_similarity: float,
        decay: bool,
        half_life_days: float,
        now: datetime,
    ) -> list[SearchResult]:
        if mode == "vector":
            similarity = vector_scores
            base = dict(vector_scores)
        elif mode == "keyword":
            similarity = _min_max(keyword_scores)
            base = dict(similarity)
        else:  # hybrid: min-max normalised 50/50 fusion of both retrievers
            similarity = vector_scores
            vec_n, kw_n = _min_max(vector_scores), _min_max(keyword_scores)
            base = {
                i: HYBRID_VECTOR_WEIGHT * vec_n.get(i, 0.0)
                + (1.0 - HYBRID_VECTOR_WEIGHT) * kw_n.get(i, 0.0)
                for i in set(vector_scores) | set(keyword_scores)
            }
        results: list[SearchResult] = []
        for log_id, score in base.items():
            row = rows.get(log_id)
            if row is None:  # deleted or re-pending since the vector was written
                continue
            sim = float(similarity.get(log_id, 0.0))
            if sim < min_similarity:
                continue
            final = float(score)
            if decay:
                age_days = max((now - row["occurred_at"]).total_seconds(), 0.0) / 86400.0
                final *= 0.5 ** (age_days / half_life_days)
            results.append(
                SearchResult(
                    log_id=log_id,
                    external_id=row["external_id"],
                    score=final,
                    similarity=sim,
                    text=row["search_text"] or "",
                    memory_type=row["memory_type"],
                    occurred_at=row["occurred_at"],
                    created_at=row["created_at"],
                    raw_data=row["raw_data"],
                )
            )
        results.sort(key=lambda r: (-r.score, r.log_id))
        return results[:limit]
