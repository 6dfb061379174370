"""The evaluation's arithmetic: per-category recall, leave-one-out choice, depth truncation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from memory_pipeline.evaluation.loo import (
    FoldScore,
    best,
    choose_in_stages,
    leave_one_out,
    leave_one_out_in_stages,
)
from memory_pipeline.evaluation.scoring import CategoryScores, format_category_table
from memory_pipeline.evaluation.tuning import ranking_grid
from memory_pipeline.search.ranking import RankingParams
from memory_pipeline.search.searcher import DEFAULT_PARAMS


def test_recall_is_averaged_per_category_and_over_all_questions() -> None:
    scores = CategoryScores((5, 10))
    ranked = [f"D{i}" for i in range(1, 11)]
    scores.add(1, ("D1", "D20"), ranked)  # multi-hop: half found
    scores.add(1, ("D6", "D7"), ranked)  # both in the top 10, neither in the top 5
    scores.add(2, ("D2",), ranked)  # temporal: found
    scores.add(None, ("D99",), ranked)  # uncategorised: missed
    assert scores.mean(10, "multi-hop") == pytest.approx((0.5 + 1.0) / 2)
    assert scores.mean(5, "multi-hop") == pytest.approx((0.5 + 0.0) / 2)
    assert scores.mean(10, "temporal") == 1.0
    assert scores.mean(10) == pytest.approx((0.5 + 1.0 + 1.0 + 0.0) / 4)  # questions, pooled
    assert scores.counts == {"all": 4, "multi-hop": 2, "temporal": 1, "uncategorised": 1}
    assert scores.groups() == ["all", "temporal", "multi-hop", "uncategorised"]
    table = format_category_table({"method": scores}, 10)
    assert "multi-hop" in table and "0.750" in table


def folds(**per_setting: dict[str, tuple[float, int]]) -> dict[str, dict[str, FoldScore]]:
    return {
        setting: {conv: FoldScore(*values) for conv, values in per.items()}
        for setting, per in per_setting.items()
    }


def test_leave_one_out_chooses_each_fold_on_the_other_conversations_only() -> None:
    # "a" is best on c1 and c2, "b" best on c3; c3 alone prefers "b" strongly
    scores = folds(
        a={"c1": (9.0, 10), "c2": (9.0, 10), "c3": (1.0, 10)},
        b={"c1": (5.0, 10), "c2": (5.0, 10), "c3": (10.0, 10)},
    )
    grid = ["a", "b"]
    split = {s.held_out: s for s in leave_one_out(scores, ["c1", "c2", "c3"], grid)}
    assert split["c1"].trained_on == ("c2", "c3")
    assert split["c1"].chosen == "b"  # c2 + c3: a 10/20, b 15/20
    assert split["c2"].chosen == "b"
    assert split["c3"].chosen == "a"  # the held-out conversation's own preference is unseen
    assert best(scores, ["c1", "c2", "c3"], grid) == "b"  # 19/30 against 20/30


def test_best_pools_questions_and_keeps_the_earlier_setting_on_a_tie() -> None:
    scores = folds(
        a={"big": (50.0, 100), "small": (1.0, 1)},  # 51/101
        b={"big": (51.0, 100), "small": (0.0, 1)},  # 51/101: a tie, pooled
    )
    assert best(scores, ["big", "small"], ["a", "b"]) == "a"
    assert best(scores, ["big", "small"], ["b", "a"]) == "b"
    with pytest.raises(ValueError):
        leave_one_out(scores, ["big"], ["a"])


def test_the_grid_starts_with_the_shipped_base_and_holds_each_setting_once() -> None:
    grid = ranking_grid(DEFAULT_PARAMS)
    assert grid[0] == replace(
        DEFAULT_PARAMS, time_weight=0.0, speaker_weight=0.0, sitting_weight=0.0
    )
    # techniques join in later stages
    assert all(not p.uses_cues and p.sitting_weight == 0 for p in grid)
    assert len(grid) == len(set(grid))
    assert {p.fusion for p in grid} == {"minmax", "rrf"}
    assert any(p.context_weight == 0 for p in grid)


def test_hybrid_depth_is_a_ranking_parameter_and_other_modes_keep_theirs() -> None:
    assert RankingParams(min_candidates=100).candidates(10) == 100
    assert RankingParams(min_candidates=100).candidates(10, "vector") == 50
    assert RankingParams(min_candidates=100).candidates(40) == 200


def test_stages_refine_the_setting_chosen_without_the_held_out_conversation() -> None:
    # settings are (base, extra); the extra stage helps on c1 and c2 only
    table = {
        ("a", 0): {"c1": (5.0, 10), "c2": (5.0, 10), "c3": (5.0, 10)},
        ("b", 0): {"c1": (4.0, 10), "c2": (4.0, 10), "c3": (9.0, 10)},
        ("a", 1): {"c1": (8.0, 10), "c2": (8.0, 10), "c3": (0.0, 10)},
        ("b", 1): {"c1": (0.0, 10), "c2": (0.0, 10), "c3": (0.0, 10)},
    }
    asked: list[tuple[str, int]] = []

    def score(setting: tuple[str, int]) -> dict[str, FoldScore]:
        asked.append(setting)
        return {c: FoldScore(*v) for c, v in table[setting].items()}

    def extra(chosen: tuple[str, int]) -> list[tuple[str, int]]:
        return [chosen, (chosen[0], 1)]

    split = {
        s.held_out: s.chosen
        for s in leave_one_out_in_stages(score, ["c1", "c2", "c3"], [("a", 0), ("b", 0)], [extra])
    }
    assert split["c3"] == ("a", 1)  # chosen on c1 + c2: base a, then the extra helps there
    assert split["c1"] == ("b", 0)  # on c2 + c3: base b (13/20 > 10/20); extra hurts b
    assert ("b", 1) in asked and choose_in_stages(score, ["c3"], [("a", 0), ("b", 0)]) == ("b", 0)
