"""Which memories a keyword query scores: all that hold a query term, or champions past a budget.

Decision record: docs/decisions/0003-champion-list-length.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Memories kept per common term (a term held by more memories than this is common).
CHAMPION_LIST_LENGTH = 256
#: Up to this many (memory, query term) matches, every matching memory is scored.
EXACT_POSTINGS_BUDGET = 2000
#: Past the exact budget, about this many memories are scored: the rare terms' memories, then
#: the heads of the common terms' champion lists, read as deep as what is left allows.
CHAMPION_POSTINGS_BUDGET = 640
#: Champion lists are read at least this deep, however little of the budget is left.
MIN_CHAMPION_DEPTH = 64


@dataclass(frozen=True)
class CandidatePlan:
    """Where a query's candidates come from: terms looked up in full, and champion terms
    (the first ``champion_depth`` memories of each one's list)."""

    full_terms: tuple[str, ...]
    champion_terms: tuple[str, ...]
    champion_depth: int = 0

    @property
    def exact(self) -> bool:
        return not self.champion_terms


def plan_candidates(
    doc_freq: Mapping[str, int],
    *,
    exact_budget: int = EXACT_POSTINGS_BUDGET,
    list_length: int = CHAMPION_LIST_LENGTH,
    champion_budget: int = CHAMPION_POSTINGS_BUDGET,
) -> CandidatePlan:
    """Decide which query terms bring all their memories and which only their champions.

    Terms no memory holds are dropped. Within ``exact_budget`` (memory, term) matches every
    term is looked up in full; beyond it, only terms held by at most ``list_length`` memories
    are, and what ``champion_budget`` leaves after them is shared among the common terms' lists
    (each read at least :data:`MIN_CHAMPION_DEPTH`, at most ``list_length`` deep).
    """
    present = {t: df for t, df in doc_freq.items() if df > 0}
    if sum(present.values()) <= exact_budget:
        return CandidatePlan(tuple(sorted(present)), ())
    full = tuple(sorted(t for t, df in present.items() if df <= list_length))
    common = tuple(sorted(t for t, df in present.items() if df > list_length))
    if not common:  # many mid-frequency terms: each brings all its memories, none is common
        return CandidatePlan(full, ())
    left = champion_budget - sum(present[t] for t in full)
    depth = min(list_length, max(MIN_CHAMPION_DEPTH, left // len(common)))
    return CandidatePlan(full, common, depth)
