"""Ranking parameters scored on cached retrieval, for leave-one-conversation-out selection.

Retrieval (the SQL and the query embeddings) depends on ranking's parameters only through the
candidate depth, so each conversation's questions are retrieved once per depth and ranked under
every setting of the grid with the product's own ranking code (:meth:`MemorySearch.rank`):
the same rankings a search with that setting returns. The default's held-out figure is measured
again through ``search_many``.

Techniques join in stages after the base grid (:func:`technique_stages`): each fold chooses
the base setting on its training conversations, then each technique's weight given it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from memory_pipeline.evaluation.locomo import PROJECT_ID, LocomoConversation
from memory_pipeline.evaluation.loo import FoldScore
from memory_pipeline.evaluation.scoring import recall_at_k
from memory_pipeline.search.ranking import RankingParams
from memory_pipeline.search.request import SearchRequest
from memory_pipeline.search.searcher import MemorySearch, Retrieved
from memory_pipeline.tenancy import Tenant

#: Results per question (recall@10 chooses).
LIMIT = 10
K = 10


def ranking_grid(base: RankingParams | None = None) -> list[RankingParams]:
    """The settings leave-one-out chooses among; the product's defaults first (they win ties).

    Fusion (min-max at five vector weights, reciprocal rank at two k and three weights) ×
    conversation-context weight × candidate depth; the techniques of :func:`technique_stages`
    off.
    """
    base = replace(base or RankingParams(), time_weight=0.0, speaker_weight=0.0, sitting_weight=0.0)
    fusions: list[dict[str, Any]] = [
        {"fusion": "minmax", "vector_weight": w} for w in (0.3, 0.4, 0.5, 0.6, 0.7)
    ] + [
        {"fusion": "rrf", "rrf_k": k, "vector_weight": w}
        for k, w in itertools.product((10.0, 60.0), (0.4, 0.5, 0.6))
    ]
    grid = [base]
    for fusion, context, depth in itertools.product(
        fusions, (0.0, 0.25, 0.5, 0.75, 1.0), (50, 100)
    ):
        setting = replace(base, context_weight=context, min_candidates=depth, **fusion)
        if setting not in grid:
            grid.append(setting)
    return grid


@dataclass
class CachedQuestions:
    """A tenant's questions as retrieved once, their evidence, and its memories' external ids."""

    name: str
    evidence: list[tuple[str, ...]]
    request: SearchRequest
    found: dict[int, Retrieved]  # by candidate depth
    external_ids: dict[int, str]

    def rankings(self, setting: RankingParams, found: Retrieved, now: datetime) -> list[list[str]]:
        """Each question's ranked external ids under ``setting``."""
        return [
            [self.external_ids.get(r.log_id, "") for r in q.ranked]
            for q in MemorySearch.rank(self.request, found, setting, now)
        ]

    def ranked(self, setting: RankingParams, now: datetime) -> list[list[str]]:
        """:meth:`rankings` on the retrieval as deep as ``setting`` asks (what
        :class:`GridScorer` ranks)."""
        return self.rankings(setting, self.found[setting.candidates(LIMIT)], now)


def retrieve_questions(
    search: MemorySearch,
    store: Any,
    name: str,
    tenant: Tenant,
    questions: Sequence[tuple[str, tuple[str, ...]]],
    grid: Sequence[RankingParams],
) -> CachedQuestions:
    """Retrieve ``(question, evidence)`` pairs of one tenant once per candidate depth of the
    grid."""
    request = SearchRequest.of([q for q, _ in questions], tenant.user_id, tenant.project_id, LIMIT)
    found: dict[int, Retrieved] = {}
    for setting in grid:
        depth = setting.candidates(LIMIT)
        if depth not in found:
            retrieved = search.retrieve(request, setting)
            if retrieved is None:
                raise RuntimeError(f"{name}: the tenant has no memories")
            found[depth] = retrieved
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT id, external_id FROM memory_log WHERE tenant_key = %s", (tenant.key,)
        ).fetchall()
    return CachedQuestions(
        name,
        [e for _, e in questions],
        request,
        found,
        {int(r["id"]): r["external_id"] for r in rows},
    )


def retrieve_conversation(
    search: MemorySearch,
    store: Any,
    conversation: LocomoConversation,
    grid: Sequence[RankingParams],
) -> CachedQuestions:
    """A LoCoMo conversation's questions, retrieved once."""
    return retrieve_questions(
        search,
        store,
        conversation.name,
        Tenant(conversation.user_id, PROJECT_ID),
        [(q.question, q.evidence) for q in conversation.questions],
        grid,
    )


#: The weights each technique stage tries (0: the technique off).
TECHNIQUE_WEIGHTS: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
#: Techniques chosen in stages after the base grid, by their RankingParams field.
TECHNIQUES: dict[str, str] = {
    "time cue": "time_weight",
    "speaker cue": "speaker_weight",
    "sitting expansion": "sitting_weight",
}


class GridScorer:
    """Rankings of cached questions under any setting, memoised: per-question recall@10 of
    the conversations, hits@1 of the seed questions (if any).

    Any cached questions with a ``ranked(setting, now)`` method serve: :class:`CachedQuestions`
    under ranking parameters, :class:`~.stronger_model.Rescorable` under staged settings.
    """

    def __init__(self, cached: Sequence[Any], seed: Any | None) -> None:
        self.cached = list(cached)
        self.seed = seed
        self.now = datetime.now(UTC)
        self._recalls: dict[Hashable, dict[str, list[float]]] = {}
        self._seed_hits: dict[Hashable, int] = {}

    def recalls(self, setting: Hashable) -> dict[str, list[float]]:
        """Per conversation, each question's recall@10 under ``setting``."""
        if setting not in self._recalls:
            self._recalls[setting] = {
                c.name: [
                    recall_at_k(evidence, ranked, K)
                    for evidence, ranked in zip(
                        c.evidence, c.ranked(setting, self.now), strict=True
                    )
                ]
                for c in self.cached
            }
        return self._recalls[setting]

    def score(self, setting: Hashable) -> dict[str, FoldScore]:
        return {n: FoldScore(sum(r), len(r)) for n, r in self.recalls(setting).items()}

    def seed_hits(self, setting: Hashable) -> int | None:
        """How many seed questions have an answer first under ``setting``."""
        if self.seed is None:
            return None
        if setting not in self._seed_hits:
            rankings = self.seed.ranked(setting, self.now)
            self._seed_hits[setting] = sum(
                1
                for answers, ranked in zip(self.seed.evidence, rankings, strict=True)
                if ranked[:1] and ranked[0] in answers
            )
        return self._seed_hits[setting]

    def admissible(self, setting: Hashable, min_seed_hits: int) -> bool:
        hits = self.seed_hits(setting)
        return hits is None or hits >= min_seed_hits


def technique_stage(
    scorer: GridScorer, field: str, min_seed_hits: int
) -> Callable[[RankingParams], list[RankingParams]]:
    """A stage trying the technique ``field`` at each weight on the setting chosen so far
    (kept first: the technique stays off unless it helps)."""

    def stage(chosen: RankingParams) -> list[RankingParams]:
        variants = (replace(chosen, **{field: w}) for w in TECHNIQUE_WEIGHTS)
        return [chosen, *(v for v in variants if scorer.admissible(v, min_seed_hits))]

    return stage


def describe(params: RankingParams) -> str:
    """A short label of a setting, for tables."""
    fusion = (
        f"min-max w={params.vector_weight:g}"
        if params.fusion == "minmax"
        else f"rrf k={params.rrf_k:g} w={params.vector_weight:g}"
    )
    cues = "".join(
        f", {name} {getattr(params, field):g}"
        for name, field in TECHNIQUES.items()
        if getattr(params, field)
    )
    return f"{fusion}, context {params.context_weight:g}, depth {params.min_candidates}{cues}"
