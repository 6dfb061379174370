"""Why a memory ranked where it did: the explanation a result carries with ``explain=True``.

Built only when asked, from what ranking already computed (plus one query for the matched
chunks), so a search without ``explain`` pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from memory_pipeline.search import ranking
from memory_pipeline.search.ranking import ContextBonus, QueryRanking, RankingParams
from memory_pipeline.storage.search_reads import CandidateFacts, MatchedChunk


def _places(scores: Mapping[int, float]) -> dict[int, int]:
    """Each memory's 1-based rank in one retriever's list (ties by id)."""
    order = sorted(scores, key=lambda i: (-scores[i], i))
    return {log_id: place for place, log_id in enumerate(order, start=1)}


def explain_ranking(
    *,
    mode: str,
    vector: Mapping[int, float],
    keyword: Mapping[int, float],
    query: QueryRanking,
    params: RankingParams,
    similarity: Mapping[int, float],
    facts: Mapping[int, CandidateFacts],
    chunks: Mapping[int, MatchedChunk],
    min_similarity: float,
    half_life_days: float | None,
    now: datetime,
) -> dict[int, dict[str, Any]]:
    """One explanation per ranked memory of ``query`` (by log id).

    Its ``score`` is ``(fusion.score + context.bonus + sitting.bonus) × each cue's factor ×
    decay.factor``:
    sorting the results by it, ties by log id, gives their order.
    """
    vector_place, keyword_place = _places(vector), _places(keyword)
    vector_norm: dict[int, float] = {}
    keyword_norm: dict[int, float] = {}
    if mode == "hybrid" and params.fusion == "minmax":
        union = set(vector) | set(keyword)
        vector_norm = ranking.min_max(dict(vector))
        keyword_norm = ranking.min_max({i: keyword.get(i, 0.0) for i in union})
    out: dict[int, dict[str, Any]] = {}
    for r in query.ranked:
        i = r.log_id
        bonus = query.context.get(i)
        sitting = query.sitting.get(i)
        if mode == "hybrid" and params.fusion == "minmax":
            fusion: dict[str, Any] = {
                "method": "min-max",
                "vector_weight": params.vector_weight,
                "vector_normalised": vector_norm.get(i, 0.0),
                "keyword_normalised": keyword_norm.get(i, 0.0),
            }
        elif mode == "hybrid":
            fusion = {
                "method": "reciprocal rank",
                "vector_weight": params.vector_weight,
                "k": params.rrf_k,
            }
        else:  # one retriever: its own score is the base
            fusion = {"method": f"{mode} only"}
        fusion["score"] = query.fused.get(i, 0.0)  # 0: a neighbour that joined through context
        chunk = chunks.get(i)
        out[i] = {
            "mode": mode,
            "vector": ({"rank": vector_place[i], "similarity": vector[i]} if i in vector else None),
            "keyword": ({"rank": keyword_place[i], "bm25": keyword[i]} if i in keyword else None),
            "fusion": fusion,
            "context": _bonus(bonus, params.context_weight),
            "sitting": _bonus(sitting, params.sitting_weight),
            "cues": query.cues.get(i) or None,
            "decay": (
                {
                    "half_life_days": half_life_days,
                    "age_days": max((now - facts[i].occurred_at).total_seconds(), 0.0) / 86400.0,
                    "factor": r.decay_factor,
                }
                if half_life_days is not None
                else None
            ),
            "score": r.score,
            "similarity": similarity.get(i),
            "min_similarity": min_similarity,
            "matched_chunk": (
                {"index": chunk.chunk_index, "similarity": chunk.similarity, "text": chunk.text}
                if chunk
                else None
            ),
        }
    return out


def summarise(explanation: Mapping[str, Any]) -> str:
    """One line for people: each retriever's rank and score, fusion, context, sitting, decay."""
    parts: list[str] = []
    if explanation.get("vector"):
        v = explanation["vector"]
        parts.append(f"vector #{v['rank']} {v['similarity']:.3f}")
    if explanation.get("keyword"):
        k = explanation["keyword"]
        parts.append(f"keyword #{k['rank']} {k['bm25']:.2f}")
    line = f"fused {explanation['fusion']['score']:.3f}"
    if explanation.get("context"):
        c = explanation["context"]
        line += f" + context {c['bonus']:.3f} (from {c['from_log_id']})"
    if explanation.get("sitting"):
        c = explanation["sitting"]
        line += f" + sitting {c['bonus']:.3f} (from {c['from_log_id']})"
    for cue, factor in (explanation.get("cues") or {}).items():
        line += f" x {cue} {factor:.2f}"
    if explanation.get("decay"):
        line += f" x decay {explanation['decay']['factor']:.3f}"
    parts.append(f"{line} = {explanation['score']:.3f}")
    if explanation.get("matched_chunk"):
        parts.append(f"chunk {explanation['matched_chunk']['index']}")
    return " | ".join(parts)


def _bonus(bonus: ContextBonus | None, weight: float) -> dict[str, Any] | None:
    """What a memory inherited from a neighbouring turn (context or sitting), if anything."""
    if bonus is None:
        return None
    return {"from_log_id": bonus.neighbour_id, "weight": weight, "bonus": bonus.amount}
