"""The second stage (docs/decisions/0153): the first stage's top ``depth`` results re-scored by
a stronger model's cosine, min-max fused with their first-stage scores by ``weight``.

The documents' second-stage vectors live in memory_vector under that model's id, beside the
first stage's and with the same vector ids; a query is encoded once by the second model.
A query whose top results lack a second-stage vector (being backfilled after the setting
changed) keeps its first-stage order: scores of two models are never compared.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from memory_pipeline.search.ranking import RankedMemory, min_max

if TYPE_CHECKING:
    from memory_pipeline.embedding import Embedder
    from memory_pipeline.settings import Settings


@dataclass(frozen=True)
class SecondStage:
    """The second stage's model, how many first-stage results it re-scores, and its weight."""

    embedder: Embedder
    depth: int = 30
    weight: float = 0.5

    @property
    def model_id(self) -> str:
        return self.embedder.model_id


def second_stage_model_id(settings: Settings) -> str | None:
    """The configured second-stage model's id, without loading it (``None``: no second stage)."""
    from memory_pipeline.embedding.backends import model_id_for

    first = model_id_for(
        settings.embedding_model, settings.embedding_backend, settings.sentence_vectors
    )
    if not settings.rerank_model or settings.rerank_model == first:
        return None  # one model's vectors must not count as another stage's (0153)
    return settings.rerank_model


def second_stage_embedder(settings: Settings) -> Embedder | None:
    """The configured second-stage model's embedder (``None``: no second stage)."""
    from memory_pipeline.embedding import load_embedder

    model_id = second_stage_model_id(settings)
    if model_id is None:
        return None
    return load_embedder(
        model_id,
        batch_size=settings.embedding_batch_size,
        precision=settings.embedding_precision,
        trace_queries=settings.query_trace,
    )


@functools.cache
def _stage(embedder: Embedder, depth: int, weight: float) -> SecondStage:
    return SecondStage(embedder, depth, weight)


def second_stage_of(settings: Settings) -> SecondStage | None:
    """The configured second stage (``None`` when ``MEMORY_PIPELINE_RERANK_MODEL`` is unset)."""
    embedder = second_stage_embedder(settings)
    if embedder is None:
        return None
    return _stage(embedder, settings.rerank_depth, settings.rerank_weight)


@dataclass(frozen=True, slots=True)
class Rescored:
    """One re-scored result: its first-stage score and the second model's cosine."""

    first: float
    cosine: float
    score: float


def rescore(
    ranked: Sequence[RankedMemory], cosines: Mapping[int, float], depth: int, weight: float
) -> tuple[list[RankedMemory], dict[int, Rescored]]:
    """``ranked`` with its top ``depth`` re-ordered by ``(1-weight)·minmax(first) +
    weight·minmax(cosine)``, the rest after them as they were; each re-scored result's parts.

    Unchanged when a top result has no cosine (its second-stage vector is missing).
    """
    top = list(ranked[:depth])
    if not top or weight <= 0 or any(r.log_id not in cosines for r in top):
        return list(ranked), {}
    first = min_max({r.log_id: r.score for r in top})
    second = min_max({r.log_id: cosines[r.log_id] for r in top})
    parts = {
        r.log_id: Rescored(
            r.score,
            cosines[r.log_id],
            (1 - weight) * first[r.log_id] + weight * second[r.log_id],
        )
        for r in top
    }
    # re-scored results sit above every first-stage score below the cut: scores stay ordered
    lift = ranked[depth].score + 1.0 if len(ranked) > depth else 0.0
    order = sorted(top, key=lambda r: (-parts[r.log_id].score, r.log_id))
    rescored = [replace(r, score=lift + parts[r.log_id].score) for r in order]
    return rescored + list(ranked[depth:]), parts
