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

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import numpy as np
import psycopg
from psycopg import sql

from memory_pipeline.embedding import Embedder, load_embedder
from memory_pipeline.embedding.backends import split_model_id
from memory_pipeline.keyword_index import (
    CHAMPION_POSTINGS_BUDGET,
    EXACT_POSTINGS_BUDGET,
    keyword_candidates,
)
from memory_pipeline.search import ranking
from memory_pipeline.search.cues import MENTIONS_TIME_SQL, asks_about_time
from memory_pipeline.search.explain import explain_ranking
from memory_pipeline.search.filters import where_to_sql
from memory_pipeline.search.ranking import QueryRanking, RankingParams
from memory_pipeline.search.request import SearchRequest
from memory_pipeline.search.result import SearchResult
from memory_pipeline.search.second_stage import Rescored, SecondStage, rescore
from memory_pipeline.search.vector import vector_candidates
from memory_pipeline.settings import EXACT_SEARCH_MAX_VECTORS
from memory_pipeline.storage import search_reads
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.live_models import model_source_of
from memory_pipeline.storage.search_reads import CandidateFacts, KnownTenant, MemoryRow
from memory_pipeline.vector_store import ChromaVectorStore

#: Hybrid's keyword side reads no deeper than MIN_CHAMPION_DEPTH per champion list (0003).
HYBRID_CHAMPION_BUDGET = 0
DEFAULT_PARAMS = RankingParams()


class CueReads(NamedTuple):
    """Which cue facts a search reads with its candidates (``search_reads.candidate_facts``)."""

    speakers: bool
    time_pattern: str | None


@dataclass
class Retrieved:
    """What retrieval found for a request, before ranking: per query each retriever's scores
    and the raw similarity of every candidate; for all queries the visible candidates' facts
    and, in hybrid mode with context, each conversation turn's neighbours and its sitting."""

    model_id: str
    vectors: np.ndarray
    vector: list[dict[int, float]]
    keyword: list[dict[int, float]]
    facts: dict[int, CandidateFacts]
    neighbours: dict[int, list[int]]
    similarity: list[dict[int, float]] = field(default_factory=list)
    #: The turns of each seed turn's sitting (hybrid mode, ``ranking.expand_sittings``).
    sittings: dict[int, list[int]] = field(default_factory=dict)


class MemorySearch:
    """Search over one database and Chroma server with one embedding model.

    ``params`` are ranking's tuned parameters (the evaluation searches with others).
    ``keyword_exact_budget`` bounds exact keyword retrieval (0 always uses champion lists,
    which the evaluation uses to measure what they cost in recall). ``exact_max_vectors``: the
    largest tenant the ``auto`` backend searches exactly in Postgres instead of Chroma.
    """

    def __init__(
        self,
        db: Database,
        store: ChromaVectorStore | None,
        embedder: Embedder,
        *,
        params: RankingParams = DEFAULT_PARAMS,
        keyword_exact_budget: int = EXACT_POSTINGS_BUDGET,
        exact_max_vectors: int = EXACT_SEARCH_MAX_VECTORS,
        second_stage: SecondStage | None = None,
    ) -> None:
        self.db = db
        self.second_stage = second_stage
        self.store = store
        self.embedder = embedder
        self.params = params
        self.keyword_exact_budget = keyword_exact_budget
        self.exact_max_vectors = exact_max_vectors

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
        stage = self.second_stage
        asked = request
        if stage is not None:  # the first stage ranks as deep as the second re-scores
            request = replace(request, limit=max(request.limit, stage.depth))
        prepared = self._prepare(request)
        if prepared is None:
            return [[] for _ in request.queries]
        request, model_id, vectors = prepared
        context = request.mode == "hybrid" and self.params.context_weight > 0
        with self.db.autocommit_connection() as conn:
            sittings = "best" if self.params.sitting_weight > 0 else None
            found = self._retrieve(
                conn,
                request,
                model_id,
                vectors,
                self.params,
                context,
                self.params.uses_cues,
                sittings,
            )
            now = datetime.now(UTC)
            rankings = [
                self._rank(request, found, i, self.params, now) for i in range(len(vectors))
            ]
            rescored: list[dict[int, Rescored]] = [{} for _ in rankings]
            if stage is not None:
                rescored = self._second_stage(conn, request, stage, rankings)
            for q in rankings:
                q.ranked = q.ranked[: asked.limit]
            rows = search_reads.memory_rows(
                conn, request.tenant.key, {r.log_id for q in rankings for r in q.ranked}
            )
            explanations: list[dict[int, dict[str, Any]]] = [{} for _ in rankings]
            if request.explain:
                explanations = [
                    self._explain(conn, request, found, i, q, now) for i, q in enumerate(rankings)
                ]
                for why, parts in zip(explanations, rescored, strict=True):
                    for log_id, entry in why.items():
                        entry["second_stage"] = _second_stage_entry(stage, parts.get(log_id))
        return [
            [
                _result(rows[r.log_id], r.score, sims[r.log_id], why.get(r.log_id))
                for r in q.ranked
                if r.log_id in rows  # deleted or re-pended since its facts were read
            ]
            for q, sims, why in zip(rankings, found.similarity, explanations, strict=True)
        ]

    def retrieve(self, request: SearchRequest, params: RankingParams) -> Retrieved | None:
        """Retrieval alone, as deep as ``params`` asks, with every turn's neighbours and
        sitting in hybrid mode (``None``: unknown tenant). The evaluation ranks it under many
        parameters with :meth:`rank`."""
        prepared = self._prepare(request) if request.queries else None
        if prepared is None:
            return None
        request, model_id, vectors = prepared
        with self.db.autocommit_connection() as conn:
            hybrid = request.mode == "hybrid"
            return self._retrieve(
                conn, request, model_id, vectors, params, hybrid, True, "every" if hybrid else None
            )

    @staticmethod
    def rank(
        request: SearchRequest, found: Retrieved, params: RankingParams, now: datetime
    ) -> list[QueryRanking]:
        """Each query's ranking of what :meth:`retrieve` found, under ``params``."""
        return [
            MemorySearch._rank(request, found, i, params, now) for i in range(len(found.vector))
        ]

    def _second_stage(
        self,
        conn: psycopg.Connection,
        request: SearchRequest,
        stage: SecondStage,
        rankings: list[QueryRanking],
    ) -> list[dict[int, Rescored]]:
        """Each query's top results re-scored by the second model (its query vectors once)."""
        vectors = stage.embedder.embed_queries(list(request.queries))
        out: list[dict[int, Rescored]] = []
        for q, vector in zip(rankings, vectors, strict=True):
            top = [r.log_id for r in q.ranked[: stage.depth]]
            chunks = search_reads.best_chunks(
                conn, request.tenant.key, stage.model_id, vector, top, with_text=False
            )
            q.ranked, parts = rescore(
                q.ranked, {i: c.similarity for i, c in chunks.items()}, stage.depth, stage.weight
            )
            out.append(parts)
        return out

    # --------------------------------------------------------------------------- the steps
    def _prepare(self, request: SearchRequest) -> tuple[SearchRequest, str, np.ndarray] | None:
        """The request with its tenant placed (which Chroma collection holds its vectors), the
        model serving the tenant and the queries' vectors (``None``: unknown tenant)."""
        tenant = self._known_tenant(request)
        if tenant is None:
            return None
        request = replace(request, tenant=request.tenant.placed(tenant.shard))
        # The tenant's searches use its live model, which lags the configured one during a
        # model rollout: vectors of two models are never compared.
        embedder = self._embedder_for(tenant.live_model)
        # Every mode embeds the queries: results carry their raw cosine similarity, which
        # min_similarity filters on.
        return request, embedder.model_id, embedder.embed_queries(list(request.queries))

    def _known_tenant(self, request: SearchRequest) -> KnownTenant | None:
        with self.db.autocommit_connection() as conn:
            return search_reads.known_tenant(conn, request.tenant.key)

    def _embedder_for(self, model_id: str | None) -> Embedder:
        """The configured embedder, or the one of ``model_id`` loaded from its recorded source."""
        if model_id is None or model_id == self.embedder.model_id:
            return self.embedder
        with self.db.connection() as conn:
            source = model_source_of(conn, model_id)
        name, backend, sentence_vectors = split_model_id(model_id)
        return load_embedder(
            name,
            batch_size=self.embedder.batch_size,
            model_source=source,
            device=self.embedder.device,
            precision=self.embedder.precision,
            trace_queries=self.embedder.trace_queries,
            backend=backend,
            exports_dir=self.embedder.exports_dir,
            sentence_vectors=sentence_vectors,
        )

    def _retrieve(
        self,
        conn: psycopg.Connection,
        request: SearchRequest,
        model_id: str,
        vectors: np.ndarray,
        params: RankingParams,
        context: bool,
        cues: bool,
        sittings: Literal["best", "every"] | None = None,
    ) -> Retrieved:
        """Each query's candidates from the retrievers of its mode, the facts of those the
        tenant may see (its own, embedded, matching the filter), each turn's neighbours if
        ``context``, their cues if ``cues``, the sittings of the turns ranking expands
        (``"best"``: each query's best turns under ``params``, one more query; ``"every"``:
        every visible turn's, for ranking under any parameters), and the raw similarity (best
        chunk) of every visible candidate."""
        mode = request.mode
        n = params.candidates(request.limit, mode)
        where = where_to_sql(request.where) if request.where else None
        vector: list[dict[int, float]] = [{} for _ in request.queries]
        keyword: list[dict[int, float]] = [{} for _ in request.queries]
        if mode in ("vector", "hybrid"):
            vector = vector_candidates(
                conn, self.store, request, model_id, vectors, n, self.exact_max_vectors
            )
        if mode in ("keyword", "hybrid"):
            budget = CHAMPION_POSTINGS_BUDGET if mode == "keyword" else HYBRID_CHAMPION_BUDGET
            keyword = [
                keyword_candidates(
                    conn,
                    request.tenant.key,
                    query,
                    n,
                    where,
                    also=set(vec),
                    exact_budget=self.keyword_exact_budget,
                    champion_budget=budget,
                )
                for query, vec in zip(request.queries, vector, strict=True)
            ]
        wanted = [set(v) | set(k) for v, k in zip(vector, keyword, strict=True)]
        # Whether memories mention a time matters only to a question about time, and the
        # regular expression over each candidate's text is most of the facts' cost.
        asks_time = any(asks_about_time(q) for q in request.queries)
        reads = CueReads(
            speakers=cues, time_pattern=MENTIONS_TIME_SQL if cues and asks_time else None
        )
        facts = search_reads.candidate_facts(
            conn, request.tenant.key, set().union(*wanted), where, **reads._asdict()
        )
        turns = {i for i, f in facts.items() if f.memory_type == ranking.CONTEXT_MEMORY_TYPE}
        neighbours = self._around(conn, request, turns, facts, where, reads) if context else {}
        seeds: set[int] = set()
        if sittings == "every" and mode == "hybrid":
            seeds = {i for i, f in facts.items() if f.memory_type == ranking.CONTEXT_MEMORY_TYPE}
        elif sittings == "best" and mode == "hybrid":
            for vec, kw in zip(vector, keyword, strict=True):
                _, base, _ = ranking.fuse_with_context(mode, vec, kw, facts, neighbours, params)
                seeds.update(ranking.sitting_seeds(base, facts))
        sitting = (
            self._around(conn, request, seeds, facts, where, reads, ranking.SITTING_REACH)
            if seeds
            else {}
        )
        found = Retrieved(model_id, vectors, vector, keyword, facts, neighbours, sittings=sitting)
        for i, ids in enumerate(wanted):
            visible = {j for j in ids if j in facts}
            visible |= {nb for j in visible for nb in neighbours.get(j, ()) if nb in facts}
            visible |= {m for j in visible for m in sitting.get(j, ()) if m in facts}
            known = {j: s for j, s in vector[i].items() if j in visible}
            missing = visible - known.keys()
            if missing:
                chunks = search_reads.best_chunks(
                    conn, request.tenant.key, model_id, vectors[i], missing, with_text=False
                )
                known.update({j: chunk.similarity for j, chunk in chunks.items()})
            found.similarity.append(known)
        return found

    @staticmethod
    def _around(
        conn: psycopg.Connection,
        request: SearchRequest,
        turns: set[int],
        facts: dict[int, CandidateFacts],
        where: sql.Composable | None,
        reads: CueReads,
        reach: int = 1,
    ) -> dict[int, list[int]]:
        """Each of ``turns``' neighbours in its sitting: the ``reach`` turns written just before
        and after it (within ``CONTEXT_MAX_GAP_SECONDS``); a neighbour that was no candidate
        joins ``facts`` if the tenant may see it."""
        tenant_key = request.tenant.key
        neighbours = search_reads.adjacent_memories(
            conn,
            tenant_key,
            turns,
            ranking.CONTEXT_MEMORY_TYPE,
            ranking.CONTEXT_MAX_GAP_SECONDS,
            reach,
        )
        new_ids = {nb for nbs in neighbours.values() for nb in nbs} - facts.keys()
        facts.update(
            search_reads.candidate_facts(conn, tenant_key, new_ids, where, **reads._asdict())
        )
        return neighbours

    @staticmethod
    def _rank(
        request: SearchRequest, found: Retrieved, i: int, params: RankingParams, now: datetime
    ) -> QueryRanking:
        """Query ``i``'s ranking (:func:`ranking.rank_query`)."""
        return ranking.rank_query(
            query=request.queries[i],
            mode=request.mode,
            vector=found.vector[i],
            keyword=found.keyword[i],
            facts=found.facts,
            neighbours=found.neighbours,
            sittings=found.sittings,
            similarity=found.similarity[i],
            params=params,
            limit=request.limit,
            min_similarity=float(request.min_similarity),
            decay_half_life_days=(
                float(request.half_life_days) if request.enable_temporal_decay else None
            ),
            now=now,
        )

    def _explain(
        self,
        conn: psycopg.Connection,
        request: SearchRequest,
        found: Retrieved,
        i: int,
        query: QueryRanking,
        now: datetime,
    ) -> dict[int, dict[str, Any]]:
        """The explanation of each ranked memory of query ``i`` (only with ``explain=True``)."""
        chunks = search_reads.best_chunks(
            conn,
            request.tenant.key,
            found.model_id,
            found.vectors[i],
            [r.log_id for r in query.ranked],
        )
        return explain_ranking(
            mode=request.mode,
            vector=found.vector[i],
            keyword=found.keyword[i],
            query=query,
            params=self.params,
            similarity=found.similarity[i],
            facts=found.facts,
            chunks=chunks,
            min_similarity=float(request.min_similarity),
            half_life_days=(
                float(request.half_life_days) if request.enable_temporal_decay else None
            ),
            now=now,
        )


def _second_stage_entry(stage: SecondStage | None, parts: Rescored | None) -> dict[str, Any] | None:
    """What the second stage made of a result (``None``: not re-scored)."""
    if stage is None or parts is None:
        return None
    return {
        "model": stage.model_id,
        "depth": stage.depth,
        "weight": stage.weight,
        "first_stage_score": parts.first,
        "cosine": parts.cosine,
        "fused": parts.score,
    }


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
