"""Leave-one-conversation-out: choose parameters on the other conversations, score the held-out.

A figure measured on the questions its parameters were chosen on is optimistic; here each
conversation is scored with the parameters that did best on the other conversations, so every
held-out figure comes from parameters that never saw its questions.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass(frozen=True)
class FoldScore:
    """A conversation's summed per-question score under one parameter setting."""

    total: float
    questions: int


def best(
    scores: Mapping[P, Mapping[str, FoldScore]], conversations: Sequence[str], grid: Sequence[P]
) -> P:
    """The setting of ``grid`` with the highest mean per-question score over ``conversations``
    (questions pooled); ties go to the earlier setting in ``grid``."""
    if not grid:
        raise ValueError("an empty parameter grid")
    chosen, chosen_mean = grid[0], float("-inf")
    for setting in grid:
        per = scores[setting]
        total = sum(per[c].total for c in conversations)
        questions = sum(per[c].questions for c in conversations)
        mean = total / questions if questions else 0.0
        if mean > chosen_mean + 1e-12:
            chosen, chosen_mean = setting, mean
    return chosen


@dataclass(frozen=True)
class Split(Generic[P]):
    """One fold: the held-out conversation and the setting chosen on the others."""

    held_out: str
    trained_on: tuple[str, ...]
    chosen: P


def leave_one_out(
    scores: Mapping[P, Mapping[str, FoldScore]], conversations: Sequence[str], grid: Sequence[P]
) -> list[Split[P]]:
    """For each conversation, the setting that does best on all the others."""
    return leave_one_out_in_stages(scores.__getitem__, conversations, grid)


def choose_in_stages(
    score: Callable[[P], Mapping[str, FoldScore]],
    conversations: Sequence[str],
    first: Sequence[P],
    then: Sequence[Callable[[P], Sequence[P]]] = (),
) -> P:
    """The best of ``first`` on ``conversations``; then, stage by stage, the best of the
    variants each later stage makes of the setting chosen so far (which a stage should list
    first, so that it is kept unless a variant does better)."""
    grid = list(first)
    chosen = best({p: score(p) for p in grid}, conversations, grid)
    for stage in then:
        grid = list(stage(chosen))
        chosen = best({p: score(p) for p in grid}, conversations, grid)
    return chosen


def leave_one_out_in_stages(
    score: Callable[[P], Mapping[str, FoldScore]],
    conversations: Sequence[str],
    first: Sequence[P],
    then: Sequence[Callable[[P], Sequence[P]]] = (),
) -> list[Split[P]]:
    """:func:`leave_one_out` with :func:`choose_in_stages` (``score`` is best memoised)."""
    if len(conversations) < 2:
        raise ValueError("leave-one-out needs at least two conversations")
    folds = []
    for held_out in conversations:
        others = tuple(c for c in conversations if c != held_out)
        folds.append(Split(held_out, others, choose_in_stages(score, others, first, then)))
    return folds
