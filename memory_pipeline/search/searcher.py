"""Tenant-scoped search over Chroma or pgvector vectors, Postgres full text, or both fused.

Every query is scoped to one tenant: the tenant's own Chroma collection (verified when opened),
``tenant_key`` on every SQL query, and, before anything is returned, every candidate memory is
looked up in Postgres under the tenant's key, so a vector that names another tenant's memory
is never returned, whatever a collection holds.

Modes (docs/search.md): ``vector`` (cosine of the query to the memory's best chunk),
``keyword`` (BM25, :mod:`memory_pipeline.keyword_index`), ``hybrid`` (both fused, then
conversation context: :mod:`memory_pipeline.search.ranking`).

Full rows (text, raw_data) are loaded only for the results returned. After the tenant check
and the query embedding, one pooled connection serves all of a search's SQL, in autocommit
mode (docs/decisions/0007-autocommit-search-connection.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from memory_pipeline.embedding import Embedder, load_embedder
from memory_pipeline.keyword_index import (
    CHAMPION_POSTINGS_BUDGET,
    EXACT_POSTINGS_BUDGET,
    keyword_candidates,
)
from memory_pipeline.search import ranking
from memory_pipeline.search.explain import explain_ranking
from memory_pipeline.search.filters import where_to_sql
from memory_pipeline.search.ranking import CONTEXT_WEIGHT, ContextBonus
from memory_pipeline.search.request import SearchRequest
from memory_pipeline.search.result import SearchResult
from memory_pipeline.search.vector import vector_candidates
from memory_pipeline.storage import search_reads
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.memory_logs import model_source_of
from memory_pipeline.storage.search_reads import CandidateFacts, KnownTenant, MemoryRow
from memory_pipeline.vector_store import ChromaVectorStore

#: Candidates fetched per retriever before fusion, decay and filters cut to ``limit``.
CANDIDATE_FACTOR = 5
MIN_CANDIDATES = 50
#: Memories hybrid mode's keyword side scores past the exact budget beyond the first
#: MIN_CHAMPION_DEPTH of each champion list: none (docs/decisions/0003-champion-list-length.md).
HYBRID_CHAMPION_BUDGET = 0


@dataclass
class QueryCandidates:
    """One query's candidates as ranking goes: each retriever's scores, their fusion, the base
    score (fused, plus context), the context bonuses, and each candidate's raw similarity."""

    vector: dict[int, float] = field(default_factory=dict)
    keyword: dict[int, float] = field(default_factory=dict)
    fused: dict[int, float] = field(default_factory=dict)
    base: dict[int, float] = field(default_factory=dict)
    context: dict[int, ContextBonus] = field(default_factory=dict)
    similarity: dict[int, float] = field(default_factory=dict)


class MemorySearch:
    """Search over one database and Chroma server with one embedding model.

    ``context_weight`` is the conversation-context share of hybrid mode (0 turns it off; the
    evaluation uses that to show what it adds). ``keyword_exact_budget`` bounds exact keyword
    retrieval (0 always uses champion lists, which the evaluation uses to measure what they
    cost in recall).
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
        self, query: str, user_id: str, project_id: str, *args: Any, **options: Any
    ) -> list[SearchResult]:
        """``MemoryStore.search_similar_memories`` (DESIGN §5): arguments as :meth:`SearchRequest.of`."""
        return self.run(SearchRequest.of([query], user_id, project_id, *args, **options))[0]

    def search_many(
        self, queries: list[str], user_id: str, project_id: str, *args: Any, **options: Any
    ) -> list[list[SearchResult]]:
        """One result list per query, for one tenant: arguments as :meth:`SearchRequest.of`."""
        return self.run(SearchRequest.of(queries, user_id, project_id, *args, **options))

    def run(self, request: SearchRequest) -> list[list[SearchResult]]:
        """One result list per query of ``request``, best first; the queries are embedded in
        one call. An unknown tenant gives empty lists."""
        if not request.queries:
            return []
        tenant = self._known_tenant(request)
        if tenant is None:
            return [[] for _ in request.queries]
        # The tenant's searches use its live model, which lags the configured one during a
        # model rollout: vectors of two models are never compared.
        embedder = self._embedder_for(tenant.live_model)
        # Every mode embeds the queries: results carry their raw cosine similarity, which
        # min_similarity filters on.
        vectors = embedder.embed_queries(list(request.queries))
        with self.db.autocommit_connection() as conn:
            found = self._candidates(conn, request, embedder.model_id, vectors)
            facts = self._visible(conn, request, found)
            if request.mode == "hybrid" and self.context_weight > 0:
                self._add_context(conn, request, found, facts)
            for i, candidates in enumerate(found):
                candidates.similarity = self._similarities(
                    conn, request, embedder.model_id, vectors[i], candidates
                )
            now = datetime.now(UTC)
            half_life = float(request.half_life_days) if request.enable_temporal_decay else None
            ranked = [
                ranking.rank(
                    c.base,
                    c.similarity,
                    facts,
                    request.limit,
                    float(request.min_similarity),
                    half_life,
                    now,
                )
                for c in found
            ]
            rows = search_reads.memory_rows(
                conn, request.tenant.key, {r.log_id for ranks in ranked for r in ranks}
            )
            explanations: list[dict[int, dict[str, Any]]] = [{} for _ in found]
            if request.explain:
                explanations = [
                    self._explain(
                        conn, request, embedder.model_id, vectors[i], c, ranks, facts, now
                    )
                    for i, (c, ranks) in enumerate(zip(found, ranked, strict=True))
                ]
        return [
            [
                _result(rows[r.log_id], r.score, c.similarity[r.log_id], why.get(r.log_id))
                for r in ranks
                if r.log_id in rows  # deleted or re-pended since its facts were read
            ]
            for ranks, c, why in zip(ranked, found, explanations, strict=True)
        ]

    # --------------------------------------------------------------------------- the steps
    def _known_tenant(self, request: SearchRequest) -> KnownTenant | None:
        with self.db.autocommit_connection() as conn:
            return search_reads.known_tenant(conn, request.tenant.key)

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

    def _candidates(
        self,
        conn: psycopg.Connection,
        request: SearchRequest,
        model_id: str,
        vectors: np.ndarray,
    ) -> list[QueryCandidates]:
        """Each query's candidates from the retrievers of its mode, and their base scores."""
        mode = request.mode
        n = max(request.limit * CANDIDATE_FACTOR, MIN_CANDIDATES)
        found = [QueryCandidates() for _ in request.queries]
        if mode in ("vector", "hybrid"):
            for c, scores in zip(
                found,
                vector_candidates(conn, self.store, request, model_id, vectors, n),
                strict=True,
            ):
                c.vector = scores
        if mode in ("keyword", "hybrid"):
            where = where_to_sql(request.where) if request.where else None
            budget = CHAMPION_POSTINGS_BUDGET if mode == "keyword" else HYBRID_CHAMPION_BUDGET
            for c, query in zip(found, request.queries, strict=True):
                c.keyword = keyword_candidates(
                    conn,
                    request.tenant.key,
                    query,
                    n,
                    where,
                    also=set(c.vector),
                    exact_budget=self.keyword_exact_budget,
                    champion_budget=budget,
                )
        for c in found:
            if mode == "vector":
                c.fused = dict(c.vector)
            elif mode == "keyword":
                c.fused = dict(c.keyword)
            else:
                c.fused = ranking.fuse(c.vector, c.keyword)
            c.base = c.fused
        return found

    def _visible(
        self, conn: psycopg.Connection, request: SearchRequest, found: list[QueryCandidates]
    ) -> dict[int, CandidateFacts]:
        """The facts of the candidates the tenant may see (its own, embedded, matching the
        filter); the others leave the base scores."""
        where = where_to_sql(request.where) if request.where else None
        facts = search_reads.candidate_facts(
            conn, request.tenant.key, {i for c in found for i in c.base}, where
        )
        for c in found:
            c.base = c.fused = {i: v for i, v in c.fused.items() if i in facts}
        return facts

    def _add_context(
        self,
        conn: psycopg.Connection,
        request: SearchRequest,
        found: list[QueryCandidates],
        facts: dict[int, CandidateFacts],
    ) -> None:
        """Conversation context: each turn inherits from the turns written just before and
        after it (:func:`ranking.inherit_context`); a neighbour that was no candidate joins the
        candidates (and ``facts``) if the tenant may see it."""
        tenant_key = request.tenant.key
        where = where_to_sql(request.where) if request.where else None
        turns = {
            i for c in found for i in c.base if facts[i].memory_type == ranking.CONTEXT_MEMORY_TYPE
        }
        neighbours = search_reads.adjacent_memories(
            conn,
            tenant_key,
            turns,
            ranking.CONTEXT_MEMORY_TYPE,
            ranking.CONTEXT_MAX_GAP_SECONDS,
        )
        new_ids = {nb for nbs in neighbours.values() for nb in nbs} - facts.keys()
        facts.update(search_reads.candidate_facts(conn, tenant_key, new_ids, where))
        for c in found:
            c.base, c.context = ranking.inherit_context(
                c.base, neighbours, facts, self.context_weight
            )

    def _explain(
        self,
        conn: psycopg.Connection,
        request: SearchRequest,
        model_id: str,
        vector: np.ndarray,
        candidates: QueryCandidates,
        ranked: list[ranking.RankedMemory],
        facts: dict[int, CandidateFacts],
        now: datetime,
    ) -> dict[int, dict[str, Any]]:
        """The explanation of each ranked memory (only with ``explain=True``)."""
        chunks = search_reads.best_chunks(
            conn, request.tenant.key, model_id, vector, [r.log_id for r in ranked]
        )
        return explain_ranking(
            mode=request.mode,
            vector=candidates.vector,
            keyword=candidates.keyword,
            fused=candidates.fused,
            context=candidates.context,
            context_weight=self.context_weight,
            vector_weight=ranking.HYBRID_VECTOR_WEIGHT,
            ranked=ranked,
            similarity=candidates.similarity,
            facts=facts,
            chunks=chunks,
            min_similarity=float(request.min_similarity),
            half_life_days=(
                float(request.half_life_days) if request.enable_temporal_decay else None
            ),
            now=now,
        )

    @staticmethod
    def _similarities(
        conn: psycopg.Connection,
        request: SearchRequest,
        model_id: str,
        vector: np.ndarray,
        candidates: QueryCandidates,
    ) -> dict[int, float]:
        """Raw cosine similarity (best chunk) of every memory that may be returned."""
        known = {k: v for k, v in candidates.vector.items() if k in candidates.base}
        missing = candidates.base.keys() - known.keys()
        if missing:
            known.update(
                search_reads.exact_similarities(conn, request.tenant.key, model_id, vector, missing)
            )
        return known


def _result(
    row: MemoryRow, score: float, similarity: float, explanation: dict[str, Any] | None
) -> SearchResult:
    return SearchResult(
        log_id=row.id,
        external_id=row.external_id,
        score=score,
        similarity=similarity,
        text=row.search_text,
        memory_type=row.memory_type,
        occurred_at=row.occurred_at,
        created_at=row.created_at,
        raw_data=row.raw_data,
        explanation=explanation,
    )
