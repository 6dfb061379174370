"""Ranking: fusion of the two retrievers, conversation context, temporal decay, the final cut.

Pure functions over ``{log_id: score}`` maps; the searcher fetches what they need.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime

from memory_pipeline.storage.search_reads import CandidateFacts

#: Share of the vector retriever in hybrid fusion (the rest is keyword).
HYBRID_VECTOR_WEIGHT = 0.5
#: Share of a neighbouring conversation turn's fused score a turn inherits (hybrid mode):
#: a reply is often only understood with the turn it answers.
CONTEXT_WEIGHT = 0.5
#: Two turns are neighbours only if written this close in time (one sitting).
CONTEXT_MAX_GAP_SECONDS = 3600.0
CONTEXT_MEMORY_TYPE = "conversation_turn"


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
    ranked: list[RankedMemory] = []
    for log_id, score in base.items():
        sim = similarity.get(log_id)
        if log_id not in facts or sim is None or sim < min_similarity:
            continue
        factor = 1.0
        if decay_half_life_days is not None:
            factor = decay_factor(facts[log_id].occurred_at, now, decay_half_life_days)
        ranked.append(RankedMemory(log_id, float(score) * factor, factor))
    ranked.sort(key=lambda r: (-r.score, r.log_id))
    return ranked[:limit]
