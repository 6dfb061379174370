"""Tenant-scoped search over Chroma or pgvector vectors, Postgres full text, or both fused.

Every query is scoped to one tenant: the tenant's own Chroma collection (verified when opened),
``tenant_key`` on every SQL query, and, before anything is returned, every candidate memory is
looked up in Postgres under the tenant's key, so a vector that names another tenant's memory
is never returned, whatever a collection holds.

Modes (``make eval`` measures them on LoCoMo; the winner is :data:`DEFAULT_MODE`):

- ``vector``: cosine similarity of the query's embedding to the memory's best chunk.
- ``keyword``: Okapi BM25 over the generated ``search_tsv`` (:mod:`memory_pipeline.search.keyword`).
- ``hybrid``: both retrievers' candidates, each score min-max normalised over their union and
  mixed :data:`HYBRID_VECTOR_WEIGHT` : rest; then *conversation context*: a conversation turn
  gains :data:`CONTEXT_WEIGHT` times the best fused score of the turns written just before and
  after it in the same sitting, because a reply is often only understood with the turn it answers.

Full rows (text, raw_data) are loaded only for the results returned. After the tenant check
and the query embedding, one pooled connection serves all of a search's SQL, in autocommit
mode: a search only reads, and each statement is then one round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql

from memory_pipeline.embedding import Embedder, load_embedder
from memory_pipeline.search.filters import validate_where_filter, where_to_sql
from memory_pipeline.search.keyword import (
    CHAMPION_POSTINGS_BUDGET,
    EXACT_POSTINGS_BUDGET,
    keyword_candidates,
)
from memory_pipeline.search.request import clean_query
from memory_pipeline.search.result import SearchResult
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.memory_logs import model_source_of
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, VectorStoreUnavailable

logger = logging.getLogger(__name__)

SearchMode = Literal["vector", "keyword", "hybrid"]
SearchBackend = Literal["chroma", "pgvector"]
SEARCH_MODES: tuple[str, ...] = ("vector", "keyword", "hybrid")
SEARCH_BACKENDS: tuple[str, ...] = ("chroma", "pgvector")
#: The mode that wins ``make eval`` (LoCoMo dev recall@10; see the README).
DEFAULT_MODE: SearchMode = "hybrid"
DEFAULT_BACKEND: SearchBackend = "chroma"
#: Candidates fetched per retriever before fusion, decay and filters cut to ``limit``.
CANDIDATE_FACTOR = 5
MIN_CANDIDATES = 50
MAX_LIMIT = 1000
#: Share of the vector retriever in hybrid fusion (the rest is keyword).
HYBRID_VECTOR_WEIGHT = 0.5
#: pgvector's HNSW candidate list (hnsw.ef_search); iterative scans go past it when a filter
#: or several chunks per memory leave too few rows.
PGVECTOR_EF_SEARCH = 200
#: How many memories hybrid mode's keyword retriever scores past the exact budget: none beyond
#: the first MIN_CHAMPION_DEPTH of each champion list. Reading deeper brings keyword-only
#: results closer to exact BM25 (keyword mode does), but in hybrid mode the vector candidates
#: are scored too, and each 100 memories more cost ~0.5 ms of keyword scoring and slowed the
#: next search's query embedding (bench B, 100k tenant, p50 11.1 -> 15.7 ms at 640).
HYBRID_CHAMPION_BUDGET = 0
#: Share of a neighbouring conversation turn's fused score a turn inherits (hybrid mode).
CONTEXT_WEIGHT = 0.5
#: Two turns are neighbours only if written this close in time (one sitting).
CONTEXT_MAX_GAP_SECONDS = 3600.0
CONTEXT_MEMORY_TYPE = "conversation_turn"


@dataclass(frozen=True, slots=True)
class CandidateFacts:
    """What ranking needs to know of a candidate memory."""

    memory_type: str
    occurred_at: datetime


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
        return dict.fromkeys(scores, 1.0)
    return {k: (v - lo) / (hi - lo) for k, v in scores.items()}


def _vector_cast(vector: np.ndarray) -> sql.Composable:
    # The per-model HNSW index is on embedding::vector(dim) (storage.vector_indexes).
    return sql.SQL("vector({})").format(sql.SQL(str(int(vector.shape[0]))))


class MemorySearch:
    """Search over one database and Chroma server with one embedding model.

    ``context_weight`` is the conversation-context share of hybrid mode (0 turns it off; the
    evaluation uses that to show what it adds). ``keyword_exact_budget`` bounds exact keyword
    retrieval (:mod:`memory_pipeline.search.keyword`; 0 always uses champion lists, which the
    evaluation uses to measure what they cost in recall).
    """

    def __init__(
        self,
        db: Database,
        store: ChromaVectorStore | None,
        embedder: Embedder,
        *,
        context_weight: float = CONTEXT_WEIGHT,
        keyword_exact_budget: int = EXACT_POSTINGS_BUDGET,
    ) -> None:
        self.db = db
        self.store = store
        self.embedder = embedder
        self.context_weight = context_weight
        self.keyword_exact_budget = keyword_exact_budget

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
        """The tenant's memories that best match ``query``, best first (DESIGN §5).

        ``min_similarity`` drops results whose raw cosine similarity is lower; with
        ``enable_temporal_decay`` the score is multiplied by
        ``0.5 ** (age_days / half_life_days)`` (age from ``occurred_at``) and re-sorted.
        ``where_filter`` speaks Chroma's operator language over the metadata keys of DESIGN §3;
        ``memory_types``, ``since`` and ``until`` add to it. Bad arguments raise ``ValueError``;
        an unknown tenant gives ``[]``.
        """
        return self.search_many(
            [query],
            user_id,
            project_id,
            limit,
            where_filter,
            min_similarity,
            enable_temporal_decay,
            half_life_days,
            mode=mode,
            backend=backend,
            memory_types=memory_types,
            since=since,
            until=until,
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
        """One result list per query, for one tenant; the queries are embedded in one call.

        Same arguments and promises as :meth:`search_similar_memories`.
        """
        tenant = Tenant(user_id, project_id)
        if isinstance(queries, str):
            raise ValueError("queries must be a list of strings, not one string")
        queries = [clean_query(q) for q in queries]
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}")
        if not -1.0 <= float(min_similarity) <= 1.0:
            raise ValueError("min_similarity must lie between -1 and 1")
        if enable_temporal_decay and not float(half_life_days) > 0:
            raise ValueError("half_life_days must be positive")
        mode = mode or DEFAULT_MODE
        backend = backend or DEFAULT_BACKEND
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
        if backend not in SEARCH_BACKENDS:
            raise ValueError(
                f"unknown backend {backend!r}; use one of {', '.join(SEARCH_BACKENDS)}"
            )
        where = self._combined_filter(where_filter, memory_types, since, until)
        if not queries:
            return []
        exists, live_model = self._tenant_live_model(tenant)
        if not exists:
            return [[] for _ in queries]
        # The tenant's searches use its live model, which lags the configured one during a
        # model rollout: vectors of two models are never compared.
        embedder = self._embedder_for(live_model)
        model_id = embedder.model_id

        n_candidates = max(limit * CANDIDATE_FACTOR, MIN_CANDIDATES)
        # Every mode embeds the queries: results carry their raw cosine similarity, which
        # min_similarity filters on.
        vectors = embedder.embed_queries(queries)
        with self.db.autocommit_connection() as conn:
            vector_scores: list[dict[int, float]] = [{} for _ in queries]
            keyword_scores: list[dict[int, float]] = [{} for _ in queries]
            if mode in ("vector", "hybrid"):
                vector_scores = self._vector_candidates(
                    conn, tenant, model_id, vectors, n_candidates, where, backend
                )
            if mode in ("keyword", "hybrid"):
                keyword_scores = [
                    keyword_candidates(
                        conn,
                        tenant.key,
                        q,
                        n_candidates,
                        where,
                        also=set(vec),
                        exact_budget=self.keyword_exact_budget,
                        champion_budget=(
                            CHAMPION_POSTINGS_BUDGET
                            if mode == "keyword"
                            else HYBRID_CHAMPION_BUDGET
                        ),
                    )
                    for q, vec in zip(queries, vector_scores, strict=True)
                ]

            base_scores: list[dict[int, float]] = []
            for vec, kw in zip(vector_scores, keyword_scores, strict=True):
                if mode == "vector":
                    base_scores.append(dict(vec))
                elif mode == "keyword":
                    base_scores.append(dict(kw))
                else:
                    base_scores.append(self._fuse(vec, kw))

            # The candidates the tenant may see: its own, embedded, matching the filter.
            facts = self._candidate_facts(conn, tenant, {i for b in base_scores for i in b}, where)
            base_scores = [{i: v for i, v in b.items() if i in facts} for b in base_scores]
            if mode == "hybrid" and self.context_weight > 0:
                base_scores = self._add_conversation_context(
                    conn, tenant, base_scores, facts, where
                )

            # Raw cosine similarity of every memory that may be returned (best chunk).
            similarities: list[dict[int, float]] = []
            for i, (vec, base) in enumerate(zip(vector_scores, base_scores, strict=True)):
                known = {k: v for k, v in vec.items() if k in base}
                missing = set(base) - set(known)
                if missing:
                    known.update(
                        self._exact_similarities(conn, tenant, model_id, vectors[i], missing)
                    )
                similarities.append(known)

            now = datetime.now(UTC)
            ranked = [
                self._rank(
                    base,
                    sims,
                    facts,
                    limit,
                    min_similarity,
                    enable_temporal_decay,
                    float(half_life_days),
                    now,
                )
                for base, sims in zip(base_scores, similarities, strict=True)
            ]
            rows = self._load_rows(conn, tenant, {log_id for r in ranked for log_id, _ in r})
        return [
            [
                SearchResult(
                    log_id=log_id,
                    external_id=rows[log_id]["external_id"],
                    score=score,
                    similarity=sims[log_id],
                    text=rows[log_id]["search_text"] or "",
                    memory_type=rows[log_id]["memory_type"],
                    occurred_at=rows[log_id]["occurred_at"],
                    created_at=rows[log_id]["created_at"],
                    raw_data=rows[log_id]["raw_data"],
                )
                for log_id, score in r
                if log_id in rows  # deleted or re-pended since its facts were read
            ]
            for r, sims in zip(ranked, similarities, strict=True)
        ]

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
            if not all(isinstance(t, str) for t in memory_types):
                raise ValueError("memory_types must be strings")
            parts.append({"memory_type": {"$in": list(memory_types)}})
        since_dt, until_dt = _aware(since, "since"), _aware(until, "until")
        if since_dt is not None:
            parts.append({"occurred_at": {"$gte": since_dt.timestamp()}})
        if until_dt is not None:
            parts.append({"occurred_at": {"$lte": until_dt.timestamp()}})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def _tenant_live_model(self, tenant: Tenant) -> tuple[bool, str | None]:
        """Whether the tenant exists, and the model whose vectors serve its searches."""
        with self.db.autocommit_connection() as conn:
            row = conn.execute(
                "SELECT live_model FROM memory_tenant WHERE tenant_key = %s", (tenant.key,)
            ).fetchone()
        return (row is not None, row["live_model"] if row else None)

    def _embedder_for(self, model_id: str | None) -> Embedder:
        """The configured embedder, or the one of ``model_id`` loaded from its recorded source."""
        if model_id is None or model_id == self.embedder.model_id:
            return self.embedder
        with self.db.connection() as conn:
            source = model_source_of(conn, model_id)
        return load_embedder(
            model_id,
            self.embedder.batch_size,
            source,
            self.embedder.device,
            self.embedder.precision,
            self.embedder.trace_queries,
        )

    def _vector_candidates(
        self,
        conn: psycopg.Connection,
        tenant: Tenant,
        model_id: str,
        vectors: np.ndarray,
        n: int,
        where: dict[str, Any] | None,
        backend: str,
    ) -> list[dict[int, float]]:
        """Best cosine similarity per memory among each query's ``n`` nearest vectors."""
        if backend == "chroma":
            if self.store is None:
                logger.warning(
                    "no Chroma server reachable: searching pgvector instead (tenant %s)", tenant
                )
            else:
                try:
                    # ids and similarities only: the tenant of each memory is checked in
                    # Postgres (_candidate_facts) before anything is returned
                    hits = self.store.query(
                        tenant, model_id, vectors, n, where, with_metadata=False
                    )
                except VectorStoreUnavailable as exc:
                    logger.warning("Chroma unreachable, falling back to pgvector: %s", exc)
                else:
                    if hits is None:  # the tenant has no collection: nothing embedded yet
                        return [{} for _ in range(len(vectors))]
                    return [
                        self._best_per_memory((h.log_id, h.similarity) for h in q) for q in hits
                    ]
        return [self._pgvector_candidates(conn, tenant, model_id, v, n, where) for v in vectors]

    @staticmethod
    def _best_per_memory(pairs: Any) -> dict[int, float]:
        best: dict[int, float] = {}
        for log_id, sim in pairs:
            if sim > best.get(log_id, -2.0):
                best[log_id] = sim
        return best

    def _pgvector_candidates(
        self,
        conn: psycopg.Connection,
        tenant: Tenant,
        model_id: str,
        vector: np.ndarray,
        n: int,
        where: dict[str, Any] | None,
    ) -> dict[int, float]:
        cast = _vector_cast(vector)
        # Without a filter on memory columns the scan stays on memory_vector (no join per
        # candidate); row status and filters are applied again when rows are loaded.
        if where:
            source = sql.SQL(
                "memory_vector v JOIN memory_log m ON m.id = v.log_id "
                "AND m.tenant_key = %(tenant)s AND m.status = 'embedded' AND {}"
            ).format(where_to_sql(where))
        else:
            source = sql.SQL("memory_vector v")
        # Under a tenant filter plain HNSW returns almost nothing; iterative scans keep its
        # recall (DESIGN §7). Vectors are fetched per chunk, so ask for more than n.
        statement = sql.SQL(
            """SELECT log_id, similarity FROM (
                   SELECT v.log_id, 1 - (v.embedding::{cast} <=> %(q)s::{cast}) AS similarity
                   FROM {source}
                   WHERE v.embedding_model = %(model)s AND v.tenant_key = %(tenant)s
                   ORDER BY v.embedding::{cast} <=> %(q)s::{cast}
                   LIMIT %(n)s) AS hits
               ORDER BY similarity DESC"""
        ).format(cast=cast, source=source)
        with conn.transaction():  # the settings hold for this transaction only
            # force_custom_plan: a generic plan (psycopg prepares a statement after 5 runs)
            # cannot match the per-model partial HNSW index and scans exactly (~1 s at 100k).
            conn.execute(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.ef_search', %s, true), "
                "set_config('plan_cache_mode', 'force_custom_plan', true)",
                (str(PGVECTOR_EF_SEARCH),),
            )
            rows = conn.execute(
                statement,
                {"q": vector, "model": model_id, "tenant": tenant.key, "n": n * 2},
            ).fetchall()
        return self._best_per_memory((r["log_id"], float(r["similarity"])) for r in rows)

    @staticmethod
    def _exact_similarities(
        conn: psycopg.Connection,
        tenant: Tenant,
        model_id: str,
        vector: np.ndarray,
        log_ids: set[int],
    ) -> dict[int, float]:
        cast = _vector_cast(vector)
        statement = sql.SQL(
            """SELECT log_id, max(1 - (embedding::{cast} <=> %(q)s::{cast})) AS similarity
               FROM memory_vector
               WHERE log_id = ANY(%(ids)s) AND tenant_key = %(tenant)s
                 AND embedding_model = %(model)s
               GROUP BY log_id"""
        ).format(cast=cast)
        rows = conn.execute(
            statement,
            {"q": vector, "ids": list(log_ids), "tenant": tenant.key, "model": model_id},
        ).fetchall()
        return {int(r["log_id"]): float(r["similarity"]) for r in rows}

    @staticmethod
    def _fuse(
        vector_scores: Mapping[int, float], keyword_scores: Mapping[int, float]
    ) -> dict[int, float]:
        """Min-max normalise both retrievers over the union of their candidates and mix them."""
        union = set(vector_scores) | set(keyword_scores)
        if not union:
            return {}
        vec_n = _min_max({i: vector_scores[i] for i in union if i in vector_scores})
        kw_n = _min_max({i: keyword_scores.get(i, 0.0) for i in union})
        # A keyword-only hit's vector score is the lowest seen (normalised: 0).
        return {
            i: HYBRID_VECTOR_WEIGHT * vec_n.get(i, 0.0)
            + (1.0 - HYBRID_VECTOR_WEIGHT) * kw_n.get(i, 0.0)
            for i in union
        }

    @staticmethod
    def _candidate_facts(
        conn: psycopg.Connection, tenant: Tenant, ids: set[int], where: dict[str, Any] | None
    ) -> dict[int, CandidateFacts]:
        """What ranking needs of the returnable memories among ``ids``.

        Returnable: the tenant's own (by ``tenant_key`` in Postgres, whatever a vector store
        said), embedded, and matching ``where``.
        """
        if not ids:
            return {}
        condition = where_to_sql(where) if where else sql.SQL("true")
        statement = sql.SQL(
            """SELECT m.id, m.memory_type, m.occurred_at FROM memory_log m
               WHERE m.id = ANY(%s) AND m.tenant_key = %s AND m.status = 'embedded'
                 AND {condition}"""
        ).format(condition=condition)
        rows = conn.execute(statement, (list(ids), tenant.key)).fetchall()
        return {int(r["id"]): CandidateFacts(r["memory_type"], r["occurred_at"]) for r in rows}

    @staticmethod
    def _conversation_neighbours(
        conn: psycopg.Connection, tenant: Tenant, ids: set[int]
    ) -> dict[int, list[int]]:
        """For each conversation turn in ``ids``: the turns written just before and after it.

        "Just before/after" is the tenant's previous and next embedded memory by id (write
        order), if that is a conversation turn too and occurred within one sitting.
        """
        if not ids:
            return {}
        statement = """
            SELECT c.id AS log_id, nb.id AS neighbour_id
            FROM memory_log c
            CROSS JOIN LATERAL (
                (SELECT p.id, p.memory_type, p.occurred_at FROM memory_log p
                 WHERE p.tenant_key = c.tenant_key AND p.id < c.id AND p.status = 'embedded'
                 ORDER BY p.id DESC LIMIT 1)
                UNION ALL
                (SELECT s.id, s.memory_type, s.occurred_at FROM memory_log s
                 WHERE s.tenant_key = c.tenant_key AND s.id > c.id AND s.status = 'embedded'
                 ORDER BY s.id LIMIT 1)
            ) AS nb
            WHERE c.id = ANY(%(ids)s) AND c.tenant_key = %(tenant)s AND c.status = 'embedded'
              AND c.memory_type = %(type)s AND nb.memory_type = %(type)s
              AND abs(extract(epoch FROM nb.occurred_at - c.occurred_at)) <= %(gap)s"""
        rows = conn.execute(
            statement,
            {
                "ids": list(ids),
                "tenant": tenant.key,
                "type": CONTEXT_MEMORY_TYPE,
                "gap": CONTEXT_MAX_GAP_SECONDS,
            },
        ).fetchall()
        neighbours: dict[int, list[int]] = {}
        for r in rows:
            neighbours.setdefault(int(r["log_id"]), []).append(int(r["neighbour_id"]))
        return neighbours

    def _add_conversation_context(
        self,
        conn: psycopg.Connection,
        tenant: Tenant,
        base_scores: list[dict[int, float]],
        facts: dict[int, CandidateFacts],
        where: dict[str, Any] | None,
    ) -> list[dict[int, float]]:
        """Each turn gains ``context_weight`` × the best fused score of its neighbours.

        A neighbour that was no candidate joins the candidates (and ``facts``) if the tenant
        may see it.
        """
        turns = {
            i
            for scores in base_scores
            for i in scores
            if facts[i].memory_type == CONTEXT_MEMORY_TYPE
        }
        neighbours = self._conversation_neighbours(conn, tenant, turns)
        new_ids = {nb for nbs in neighbours.values() for nb in nbs} - facts.keys()
        facts.update(self._candidate_facts(conn, tenant, new_ids, where))
        out: list[dict[int, float]] = []
        for scores in base_scores:
            inherited: dict[int, float] = {}
            for log_id, score in scores.items():
                for nb in neighbours.get(log_id, ()):
                    if nb in facts:
                        inherited[nb] = max(inherited.get(nb, 0.0), score)
            merged = dict(scores)
            for nb, score in inherited.items():
                merged[nb] = merged.get(nb, 0.0) + self.context_weight * score
            out.append(merged)
        return out

    @staticmethod
    def _load_rows(
        conn: psycopg.Connection, tenant: Tenant, ids: set[int]
    ) -> dict[int, dict[str, Any]]:
        """The full rows of the memories to return (still the tenant's and embedded)."""
        if not ids:
            return {}
        rows = conn.execute(
            """SELECT m.id, m.external_id, m.search_text, m.memory_type, m.occurred_at,
                      m.created_at, m.raw_data
               FROM memory_log m
               WHERE m.id = ANY(%s) AND m.tenant_key = %s AND m.status = 'embedded'""",
            (list(ids), tenant.key),
        ).fetchall()
        return {int(r["id"]): r for r in rows}

    @staticmethod
    def _rank(
        base: Mapping[int, float],
        similarity: Mapping[int, float],
        facts: Mapping[int, CandidateFacts],
        limit: int,
        min_similarity: float,
        decay: bool,
        half_life_days: float,
        now: datetime,
    ) -> list[tuple[int, float]]:
        """The ``limit`` best ``(log_id, final score)`` pairs, best first."""
        ranked: list[tuple[int, float]] = []
        for log_id, score in base.items():
            sim = similarity.get(log_id)
            if log_id not in facts or sim is None or sim < min_similarity:
                continue
            final = float(score)
            if decay:
                age = max((now - facts[log_id].occurred_at).total_seconds(), 0.0) / 86400.0
                final *= 0.5 ** (age / half_life_days)
            ranked.append((log_id, final))
        ranked.sort(key=lambda pair: (-pair[1], pair[0]))
        return ranked[:limit]
