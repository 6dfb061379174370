"""The stronger model in ``make eval`` (issue 27, docs/decisions/0153): all-mpnet-base-v2 as a
second stage over the shipped first stage, and as the tenants' only model.

The second stage is chosen like the first: each conversation is scored with the depth and
weight that did best on the other conversations, on top of the first-stage setting its fold
chose. Its rankings come from the product's code on cached retrieval: the first stage retrieved
as deep as the product retrieves when the second stage is on (:meth:`MemorySearch.run` asks for
``max(limit, depth)`` results), ranked by :meth:`MemorySearch.rank`, re-scored by
:func:`~memory_pipeline.search.second_stage.rescore` with the second model's cosines that
pgvector computes for the product (``search_reads.best_chunks``). The held-out row is then
searched again through ``search_many`` with the chosen second stage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from memory_pipeline.evaluation.locomo import KS, PROJECT_ID, LocomoConversation, score_rankings
from memory_pipeline.evaluation.loo import Split, best
from memory_pipeline.evaluation.scoring import CategoryScores
from memory_pipeline.evaluation.tuning import LIMIT, CachedQuestions, GridScorer, describe
from memory_pipeline.search.ranking import QueryRanking, RankingParams
from memory_pipeline.search.searcher import MemorySearch, Retrieved
from memory_pipeline.search.second_stage import SecondStage, rescore
from memory_pipeline.storage import memory_reads, search_reads
from memory_pipeline.tenancy import Tenant

MPNET = "sentence-transformers/all-mpnet-base-v2"
#: How many first-stage results the second stage may re-score, and its fusion weights.
DEPTHS: tuple[int, ...] = (10, 20, 30, 50, 100)
WEIGHTS: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8)


class Staged(NamedTuple):
    """A first-stage setting and the second stage on top of it (``depth`` 0: none)."""

    first: RankingParams
    depth: int = 0
    weight: float = 0.0

    def describe(self) -> str:
        second = f"; second stage depth {self.depth}, weight {self.weight:g}" if self.depth else ""
        return describe(self.first) + second


def staged_grid(first: RankingParams) -> list[Staged]:
    """The second-stage settings a fold chooses among, on its first-stage choice; no second
    stage first (it is kept unless re-scoring does better)."""
    return [Staged(first), *(Staged(first, d, w) for d in DEPTHS for w in WEIGHTS)]


@dataclass
class Rescorable:
    """A tenant's questions retrieved as deep as each depth needs, and per question the second
    model's cosine to each of the tenant's memories."""

    name: str
    evidence: list[tuple[str, ...]]
    request: Any  # SearchRequest of the questions, limit LIMIT
    found: dict[int, Retrieved]  # by candidate count
    cosines: list[dict[int, float]]
    external_ids: dict[int, str]
    _first: dict[tuple[RankingParams, int], list[QueryRanking]] = field(default_factory=dict)

    def ranked(self, setting: Staged, now: datetime) -> list[list[str]]:
        """Each question's top-:data:`LIMIT` external ids under ``setting``."""
        limit = max(LIMIT, setting.depth)
        key = (setting.first, limit)
        if key not in self._first:
            request = replace(self.request, limit=limit)
            found = self.found[setting.first.candidates(limit)]
            self._first[key] = MemorySearch.rank(request, found, setting.first, now)
        out = []
        for q, cosines in zip(self._first[key], self.cosines, strict=True):
            ranked = q.ranked
            if setting.depth:
                ranked, _ = rescore(ranked, cosines, setting.depth, setting.weight)
            out.append([self.external_ids.get(r.log_id, "") for r in ranked[:LIMIT]])
        return out


def rescorable(
    search: MemorySearch,
    store: Any,
    cached: CachedQuestions,
    second: SecondStage,
    firsts: Sequence[RankingParams],
) -> Rescorable:
    """``cached``'s questions retrieved once per candidate count the settings of ``firsts``
    need at each depth, with their second-model cosines."""
    request = cached.request
    found: dict[int, Retrieved] = {}
    for first in firsts:
        for depth in (LIMIT, *DEPTHS):
            limit = max(LIMIT, depth)
            candidates = first.candidates(limit)
            if candidates not in found:
                retrieved = search.retrieve(replace(request, limit=limit), first)
                if retrieved is None:
                    raise RuntimeError(f"{cached.name}: the tenant has no memories")
                found[candidates] = retrieved
    vectors = second.embedder.embed_queries(list(request.queries))
    log_ids = list(cached.external_ids)
    with store.db.autocommit_connection() as conn:
        cosines = [
            {
                log_id: chunk.similarity
                for log_id, chunk in search_reads.best_chunks(
                    conn, request.tenant.key, second.model_id, vector, log_ids, with_text=False
                ).items()
            }
            for vector in vectors
        ]
    return Rescorable(cached.name, cached.evidence, request, found, cosines, cached.external_ids)


def choose_second_stage(
    scorer: GridScorer, conversations: Sequence[str], first: RankingParams, min_seed_hits: int
) -> Staged:
    """The admissible second stage on ``first`` that does best on ``conversations``."""
    grid = [s for s in staged_grid(first) if s.depth == 0 or scorer.admissible(s, min_seed_hits)]
    return best({s: scorer.score(s) for s in grid}, conversations, grid)


def second_stage_folds(
    scorer: GridScorer, first_folds: Sequence[Split[RankingParams]], min_seed_hits: int
) -> list[Split[Staged]]:
    """Each fold's second stage, chosen on its training conversations over its first-stage
    choice."""
    return [
        Split(
            f.held_out,
            f.trained_on,
            choose_second_stage(scorer, f.trained_on, f.chosen, min_seed_hits),
        )
        for f in first_folds
    ]


def staged_held_out_searches(
    store: Any,
    second: SecondStage,
    conversations: Sequence[LocomoConversation],
    chosen: dict[str, Staged],
    *,
    backend: str | None = None,
) -> CategoryScores:
    """Each conversation searched through ``search_many`` with its fold's first stage and
    second stage."""

    def rank(conversation: LocomoConversation, questions: list[str]) -> list[list[str]]:
        setting = chosen[conversation.name]
        stage = replace(second, depth=setting.depth, weight=setting.weight)
        search = MemorySearch(
            store.db,
            store.search.store,
            store.embedder,
            params=setting.first,
            second_stage=stage if setting.depth else None,
        )
        results = search.search_many(
            questions, conversation.user_id, PROJECT_ID, max(KS), mode="hybrid", backend=backend
        )
        return [[h.external_id for h in hits] for hits in results]

    return score_rankings(conversations, rank)


def write_second_stage(store: Any, tenants: Sequence[Tenant], model_id: str) -> tuple[int, float]:
    """The tenants' second-stage vectors written by the pipeline (the backfill a configuration
    change triggers); how many vectors the model then has for them, and the seconds it took."""
    started = time.perf_counter()
    for tenant in tenants:
        store.process_pending(tenant.user_id, tenant.project_id)
    seconds = time.perf_counter() - started
    with store.db.autocommit_connection() as conn:
        vectors = sum(
            len(memory_reads.vector_ids_of_tenant(conn, t.key, model_id)) for t in tenants
        )
    return vectors, seconds
