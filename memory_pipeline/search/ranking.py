"""Ranking: fusion of the two retrievers, conversation context and sitting, cues, temporal decay,
the final cut.

Pure functions over ``{log_id: score}`` maps; the searcher fetches what they need, and
:func:`rank_query` runs them in order for one query. The evaluation calls the same function to
choose :class:`RankingParams` by leave-one-conversation-out (docs/search.md).
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from memory_pipeline.search.cues import asks_about_time, named_speakers
from memory_pipeline.storage.search_reads import CandidateFacts

#: Share of the vector retriever in hybrid fusion (the rest is keyword); chosen by
#: leave-one-conversation-out on LoCoMo dev (docs/decisions/0150-ranking-chosen-leave-one-out.md).
HYBRID_VECTOR_WEIGHT = 0.5
#: Share of a neighbouring conversation turn's fused score a turn inherits (hybrid mode):
#: a reply is often only understood with the turn it answers.
CONTEXT_WEIGHT = 0.5
#: Two turns are neighbours only if written this close in time (one sitting).
CONTEXT_MAX_GAP_SECONDS = 3600.0
CONTEXT_MEMORY_TYPE = "conversation_turn"
#: Candidates fetched per retriever: ``max(limit × CANDIDATE_FACTOR, MIN_CANDIDATES)``, and in
#: hybrid mode at least ``RankingParams.min_candidates`` (fusion sees deeper lists).
CANDIDATE_FACTOR = 5
MIN_CANDIDATES = 50
HYBRID_MIN_CANDIDATES = 50
#: Query cues' weights (chosen with the rest, docs/decisions/0150-ranking-chosen-leave-one-out.md).
TIME_WEIGHT = 0.5
SPEAKER_WEIGHT = 0.2
#: Sitting expansion (hybrid mode): the turns of the sitting of the best turn gain this share
#: of its score (what else was said in that sitting often completes the answer; decision 0151).
SITTING_WEIGHT = 0.2
#: How many of the best turns lend their sitting.
SITTING_SEEDS = 1
#: A sitting reaches this many turns before and after its seed (within CONTEXT_MAX_GAP_SECONDS).
SITTING_REACH = 32
Fusion = Literal["minmax", "rrf"]


@dataclass(frozen=True)
class RankingParams:
    """The tuned parameters of ranking (the defaults are the product's)."""

    #: How hybrid mode fuses its retrievers: min-max normalised scores, or reciprocal ranks.
    fusion: Fusion = "minmax"
    vector_weight: float = HYBRID_VECTOR_WEIGHT
    #: Reciprocal-rank fusion's k (``1 / (k + rank)``).
    rrf_k: float = 60.0
    context_weight: float = CONTEXT_WEIGHT
    #: A question about time multiplies the scores of memories that mention a time by
    #: ``1 + time_weight`` (:mod:`.cues`; docs/decisions/0151-query-cues.md).
    time_weight: float = TIME_WEIGHT
    #: A question naming a speaker multiplies the scores of that speaker's turns by
    #: ``1 + speaker_weight``.
    speaker_weight: float = SPEAKER_WEIGHT
    #: The turns of the best turn's sitting gain ``sitting_weight`` × its score (hybrid mode).
    sitting_weight: float = SITTING_WEIGHT
    #: Hybrid mode's candidate depth per retriever.
    min_candidates: int = HYBRID_MIN_CANDIDATES

    @property
    def uses_cues(self) -> bool:
        """Whether ranking reads the candidates' cues (speaker, a time mentioned)."""
        return self.time_weight > 0 or self.speaker_weight > 0

    def candidates(self, limit: int, mode: str = "hybrid") -> int:
        """How many candidates each retriever brings for a search of ``limit`` results."""
        floor = self.min_candidates if mode == "hybrid" else MIN_CANDIDATES
        return max(limit * CANDIDATE_FACTOR, floor)


@dataclass
class QueryRanking:
    """One query's ranking, and the intermediate scores an explanation shows."""

    ranked: list[RankedMemory]
    fused: dict[int, float] = field(default_factory=dict)
    base: dict[int, float] = field(default_factory=dict)
    context: dict[int, ContextBonus] = field(default_factory=dict)
    #: What a memory inherited from the best turn of its sitting.
    sitting: dict[int, ContextBonus] = field(default_factory=dict)
    #: The cues that multiplied a memory's score, by name (``time``, ``speaker``).
    cues: dict[int, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContextBonus:
    """What a memory inherited from a neighbouring turn: ``weight × the neighbour's score``."""

    neighbour_id: int
    amount: float


@dataclass(frozen=True, slots=True)
class RankedMemory:
    """A memory in the final order: its score and the decay factor already applied to it."""

    log_id: int
    score: float
    decay_factor: float = 1.0


def min_max(scores: Mapping[int, float]) -> dict[int, float]:
    """Scores rescaled to [0, 1] (all 1 when they are equal)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo < 1e-12:
        return dict.fromkeys(scores, 1.0)
    return {k: (v - lo) / (hi - lo) for k, v in scores.items()}


def fuse(
    vector_scores: Mapping[int, float],
    keyword_scores: Mapping[int, float],
    vector_weight: float = HYBRID_VECTOR_WEIGHT,
) -> dict[int, float]:
    """Min-max normalise both retrievers over the union of their candidates and mix them."""
    union = set(vector_scores) | set(keyword_scores)
    if not union:
        return {}
    vec_n = min_max({i: vector_scores[i] for i in union if i in vector_scores})
    kw_n = min_max({i: keyword_scores.get(i, 0.0) for i in union})
    # A keyword-only hit's vector score is the lowest seen (normalised: 0).
    return {
        i: vector_weight * vec_n.get(i, 0.0) + (1.0 - vector_weight) * kw_n.get(i, 0.0)
        for i in union
    }


def reciprocal_rank_fuse(
    vector_scores: Mapping[int, float],
    keyword_scores: Mapping[int, float],
    vector_weight: float = HYBRID_VECTOR_WEIGHT,
    k: float = 60.0,
) -> dict[int, float]:
    """Reciprocal-rank fusion: ``w / (k + vector rank) + (1 − w) / (k + keyword rank)``."""
    out: dict[int, float] = {}
    for weight, scores in ((vector_weight, vector_scores), (1.0 - vector_weight, keyword_scores)):
        order = sorted(scores, key=lambda i: (-scores[i], i))
        for place, log_id in enumerate(order, start=1):
            out[log_id] = out.get(log_id, 0.0) + weight / (k + place)
    return out


def inherit_context(
    scores: Mapping[int, float],
    neighbours: Mapping[int, list[int]],
    visible: Container[int],
    weight: float,
) -> tuple[dict[int, float], dict[int, ContextBonus]]:
    """Each visible neighbour of a scored turn gains ``weight`` × that turn's score (the best
    one, if several); a neighbour that had no score joins with the gain alone."""
    inherited: dict[int, tuple[float, int]] = {}
    for log_id, score in scores.items():
        for nb in neighbours.get(log_id, ()):
            if nb in visible and (nb not in inherited or score > inherited[nb][0]):
                inherited[nb] = (score, log_id)
    merged = dict(scores)
    bonus: dict[int, ContextBonus] = {}
    for nb, (score, source) in inherited.items():
        amount = weight * score
        merged[nb] = merged.get(nb, 0.0) + amount
        bonus[nb] = ContextBonus(source, amount)
    return merged, bonus


def sitting_seeds(
    scores: Mapping[int, float], facts: Mapping[int, CandidateFacts], count: int = SITTING_SEEDS
) -> list[int]:
    """The ``count`` best-scored conversation turns (ties by id): whose sittings expand."""
    turns = ((v, i) for i, v in scores.items() if facts[i].memory_type == CONTEXT_MEMORY_TYPE)
    return [i for _, i in heapq.nsmallest(count, turns, key=lambda t: (-t[0], t[1]))]


def expand_sittings(
    scores: Mapping[int, float],
    sittings: Mapping[int, list[int]],
    facts: Mapping[int, CandidateFacts],
    weight: float,
) -> tuple[dict[int, float], dict[int, ContextBonus]]:
    """Each visible turn of the best turns' sittings (:func:`sitting_seeds`) gains ``weight`` ×
    that turn's score (the best one, if several); a turn that had no score joins with it."""
    merged = dict(scores)
    bonus: dict[int, ContextBonus] = {}
    for seed in sitting_seeds(scores, facts):
        amount = weight * scores[seed]
        for member in sittings.get(seed, ()):
            if member in facts and (member not in bonus or amount > bonus[member].amount):
                bonus[member] = ContextBonus(seed, amount)
    for member, b in bonus.items():
        merged[member] = merged.get(member, 0.0) + b.amount
    return merged, bonus


def decay_factor(occurred_at: datetime, now: datetime, half_life_days: float) -> float:
    """``0.5 ** (age_days / half_life_days)``; a memory from the future does not gain."""
    age_days = max((now - occurred_at).total_seconds(), 0.0) / 86400.0
    return 0.5 ** (age_days / half_life_days)


def rank(
    base: Mapping[int, float],
    similarity: Mapping[int, float],
    facts: Mapping[int, CandidateFacts],
    limit: int,
    min_similarity: float,
    decay_half_life_days: float | None,
    now: datetime,
) -> list[RankedMemory]:
    """The ``limit`` best memories, best first (ties by id).

    A memory is dropped when it is not returnable (no ``facts``) or its raw similarity is below
    ``min_similarity``; with a half-life, scores decay with age before sorting.
    """
    kept: list[tuple[float, int, float]] = []
    for log_id, score in base.items():
        sim = similarity.get(log_id)
        if sim is None or sim < min_similarity or log_id not in facts:
            continue
        factor = 1.0
        if decay_half_life_days is not None:
            factor = decay_factor(facts[log_id].occurred_at, now, decay_half_life_days)
        kept.append((float(score) * factor, log_id, factor))
    best = heapq.nsmallest(limit, kept, key=lambda t: (-t[0], t[1]))
    return [RankedMemory(log_id, final, factor) for final, log_id, factor in best]


def apply_cues(
    query: str,
    scores: Mapping[int, float],
    facts: Mapping[int, CandidateFacts],
    params: RankingParams,
) -> tuple[dict[int, float], dict[int, dict[str, float]]]:
    """Scores multiplied by the query's cues (:mod:`.cues`), and each memory's multipliers."""
    factors: dict[int, dict[str, float]] = {}
    if params.time_weight > 0 and asks_about_time(query):
        for i in scores:
            if facts[i].mentions_time:
                factors.setdefault(i, {})["time"] = 1.0 + params.time_weight
    if params.speaker_weight > 0:
        speakers = {s for i in scores if (s := facts[i].speaker)}
        named = named_speakers(query, speakers)
        if named and len(named) < len(speakers):  # naming everyone singles out no one
            for i in scores:
                if facts[i].speaker in named:
                    factors.setdefault(i, {})["speaker"] = 1.0 + params.speaker_weight
    if not factors:
        return dict(scores), factors
    out = dict(scores)
    for i, by_cue in factors.items():
        for factor in by_cue.values():
            out[i] *= factor
    return out, factors


def fuse_with_context(
    mode: str,
    vector: Mapping[int, float],
    keyword: Mapping[int, float],
    facts: Mapping[int, CandidateFacts],
    neighbours: Mapping[int, list[int]],
    params: RankingParams,
) -> tuple[dict[int, float], dict[int, float], dict[int, ContextBonus]]:
    """The first steps of :func:`rank_query`: the fused scores of the visible candidates, and
    those scores with what turns inherited from their neighbours (hybrid mode)."""
    if mode == "vector":
        scores = dict(vector)
    elif mode == "keyword":
        scores = dict(keyword)
    elif params.fusion == "rrf":
        scores = reciprocal_rank_fuse(vector, keyword, params.vector_weight, params.rrf_k)
    else:
        scores = fuse(vector, keyword, params.vector_weight)
    # fused over everything retrieved (as normalised), then cut to what the tenant may see
    fused = {i: v for i, v in scores.items() if i in facts}
    base, context = fused, {}
    if mode == "hybrid" and params.context_weight > 0 and neighbours:
        base, context = inherit_context(fused, neighbours, facts, params.context_weight)
    return fused, base, context


def rank_query(
    *,
    query: str,
    mode: str,
    vector: Mapping[int, float],
    keyword: Mapping[int, float],
    facts: Mapping[int, CandidateFacts],
    neighbours: Mapping[int, list[int]],
    sittings: Mapping[int, list[int]],
    similarity: Mapping[int, float],
    params: RankingParams,
    limit: int,
    min_similarity: float,
    decay_half_life_days: float | None,
    now: datetime,
) -> QueryRanking:
    """One query's final ranking from its retrievers' scores.

    Only candidates in ``facts`` (those the tenant may see) count. Hybrid mode fuses the two
    retrievers, then each conversation turn inherits from its ``neighbours``, then the turns of
    the best turn's sitting (``sittings``: a turn's sitting, :meth:`MemorySearch._retrieve`)
    gain from it; then the query's cues multiply (any mode), then decay, then the cut to
    ``limit``.
    """
    fused, base, context = fuse_with_context(mode, vector, keyword, facts, neighbours, params)
    sitting: dict[int, ContextBonus] = {}
    if mode == "hybrid" and params.sitting_weight > 0 and sittings:
        base, sitting = expand_sittings(base, sittings, facts, params.sitting_weight)
    cues: dict[int, dict[str, float]] = {}
    if params.uses_cues:
        base, cues = apply_cues(query, base, facts, params)
    ranked = rank(base, similarity, facts, limit, min_similarity, decay_half_life_days, now)
    return QueryRanking(ranked, fused, base, context, sitting, cues)
