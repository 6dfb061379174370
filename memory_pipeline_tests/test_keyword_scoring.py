"""BM25 scoring and candidate planning (pure functions of memory_pipeline.keyword_index)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memory_pipeline.keyword_index.bm25 import (
    BM25_K1,
    TermStatistics,
    idf,
    query_idfs,
    term_weight,
)
from memory_pipeline.keyword_index.plan import MIN_CHAMPION_DEPTH, CandidatePlan, plan_candidates
from memory_pipeline.keyword_index.storage import tsquery_any


def stats(docs: int, total_length: int, **doc_freq: int) -> TermStatistics:
    return TermStatistics(docs=docs, total_length=total_length, removed=0, doc_freq=doc_freq)


def test_idf_is_the_bm25_formula_and_rarer_terms_weigh_more() -> None:
    assert idf(1, 10) == pytest.approx(math.log(1 + 9.5 / 1.5))
    assert idf(1, 100) > idf(10, 100) > idf(90, 100) > 0.0


def test_a_term_in_every_memory_still_weighs_a_little_never_less_than_nothing() -> None:
    assert 0.0 < idf(100, 100) < idf(99, 100)


def test_term_weight_saturates_and_favours_short_memories() -> None:
    assert term_weight(1, 10, 10.0) < term_weight(2, 10, 10.0) < term_weight(50, 10, 10.0)
    assert term_weight(50, 10, 10.0) < BM25_K1 + 1.0
    assert term_weight(1, 5, 10.0) > term_weight(1, 10, 10.0) > term_weight(1, 40, 10.0)
    # at average length, one occurrence weighs exactly (k1 + 1) / (1 + k1)
    assert term_weight(1, 10, 10.0) == pytest.approx((BM25_K1 + 1) / (1 + BM25_K1))


def test_query_idfs_follow_the_tenants_document_frequencies() -> None:
    assert query_idfs(stats(4, 40, cat=1, sat=3), ["cat", "sat"]) == [idf(1, 4), idf(3, 4)]


def test_statistics_that_lag_behind_the_memories_never_break_scoring() -> None:
    # a memory embedded between the two statements: its term is not counted yet
    (weight,) = query_idfs(stats(0, 0, new=0), ["new"])
    assert weight > 0 and weight == idf(1, 1)


def test_a_small_query_is_planned_exactly() -> None:
    plan = plan_candidates({"rare": 3, "common": 1500, "absent": 0}, exact_budget=2000)
    assert plan == CandidatePlan(full_terms=("common", "rare"), champion_terms=())
    assert plan.exact


def test_a_large_query_takes_common_terms_from_champion_lists_only() -> None:
    plan = plan_candidates(
        {"rare": 3, "edge": 64, "common": 5000, "commoner": 9000, "absent": 0},
        exact_budget=2000,
        list_length=64,
    )
    assert plan.full_terms == ("edge", "rare")
    assert plan.champion_terms == ("common", "commoner")
    assert not plan.exact


def test_champion_lists_are_read_as_deep_as_the_budget_left_by_rarer_terms_allows() -> None:
    doc_freq = {"rare": 40, "edge": 60, "common": 5000, "commoner": 9000}
    plan = plan_candidates(doc_freq, exact_budget=2000, list_length=512, champion_budget=1000)
    assert plan.champion_terms == ("common", "commoner")
    assert plan.champion_depth == (1000 - 40 - 60) // 2
    deep = plan_candidates(doc_freq, exact_budget=2000, list_length=300, champion_budget=1000)
    assert deep.champion_depth == 300  # never past a list's end
    shallow = plan_candidates(doc_freq, exact_budget=2000, list_length=512, champion_budget=100)
    assert shallow.champion_depth == MIN_CHAMPION_DEPTH  # rare terms used it all: the floor


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(0, 10_000), max_size=12))
def test_every_present_term_is_planned_once_and_absent_ones_never(doc_freq: dict[str, int]) -> None:
    plan = plan_candidates(doc_freq)
    planned = [*plan.full_terms, *plan.champion_terms]
    assert sorted(planned) == sorted(t for t, df in doc_freq.items() if df > 0)


def test_tsquery_quotes_lexemes_for_the_tsquery_parser() -> None:
    assert tsquery_any(["cat", "o'neil", "back\\slash"]) == "'cat' | 'o''neil' | 'back\\\\slash'"
