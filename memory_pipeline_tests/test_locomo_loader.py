"""The LoCoMo loader: turns become memories, evidence ids follow the README's parsing rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory_pipeline.evaluation.locomo import (
    DEFAULT_DATA_DIR,
    load_conversations,
    parse_conversation,
    parse_evidence,
    recall_at_k,
)

LOCOMO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo-dev"

DOCUMENT = {
    "speaker_a": "Ann",
    "speaker_b": "Bob",
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
        {"speaker": "Ann", "dia_id": "D1:1", "text": "Hi Bob!"},
        {"speaker": "Bob", "dia_id": "D1:2", "text": "Look", "blip_caption": "a photo of a dog"},
    ],
    "session_2_date_time": "2:00 pm on 9 May, 2023",
    "session_2": [{"speaker": "Ann", "dia_id": "D2:1", "text": "Bye"}],
    "session_3_date_time": "no session 3 turns: an annotation only",
    "session_1_summary": "not a memory",
    "session_1_observation": {"Ann": [["not a memory", "D1:1"]]},
    "qa": [
        {"question": "Who has a dog?", "evidence": ["D1:2"], "category": 1},
        {"question": "Two ids in one entry", "evidence": ["D1:1; D2:1"], "category": 2},
        {"question": "Whitespace too", "evidence": ["D1:1 D1:2", "D1:2"], "category": 2},
        {"question": "Unknown ids dropped", "evidence": ["D9:9", "D2:1"], "category": 3},
        {"question": "Nothing left", "evidence": ["D7:1; D8:2"], "category": 4},
        {"question": "No evidence", "evidence": [], "category": 5},
    ],
}


def test_evidence_entries_split_on_semicolons_and_whitespace() -> None:
    known = {"D1:1", "D1:2", "D8:6", "D9:17"}
    assert parse_evidence(["D8:6; D9:17"], known) == ("D8:6", "D9:17")
    assert parse_evidence(["D1:1 D1:2", "D1:2"], known) == ("D1:1", "D1:2")
    assert parse_evidence(["D1:1;D1:2\tD8:6"], known) == ("D1:1", "D1:2", "D8:6")


def test_evidence_keeps_only_ids_that_exist_in_the_conversation() -> None:
    assert parse_evidence(["D9:9", "D1:1", "", "D30:1"], {"D1:1"}) == ("D1:1",)
    assert parse_evidence([], {"D1:1"}) == ()


def test_turns_become_memories_with_their_session_and_time() -> None:
    conv = parse_conversation("conv-x", DOCUMENT)
    assert conv.user_id == "conv-x"
    assert [t.dia_id for t in conv.turns] == ["D1:1", "D1:2", "D2:1"]
    assert conv.turns[1].raw_data == {
        "speaker": "Bob",
        "dia_id": "D1:2",
        "text": "Look",
        "blip_caption": "a photo of a dog",
        "session": 1,
        "session_date_time": "1:56 pm on 8 May, 2023",
    }
    assert conv.turns[2].raw_data["session"] == 2


def test_questions_without_existing_evidence_are_skipped_and_every_category_kept() -> None:
    conv = parse_conversation("conv-x", DOCUMENT)
    assert [(q.question, q.evidence) for q in conv.questions] == [
        ("Who has a dog?", ("D1:2",)),
        ("Two ids in one entry", ("D1:1", "D2:1")),
        ("Whitespace too", ("D1:1", "D1:2")),
        ("Unknown ids dropped", ("D2:1",)),
    ]
    assert conv.skipped_questions == 2
    assert {q.category for q in conv.questions} == {1, 2, 3}


def test_recall_at_k_counts_evidence_found_in_the_top_k() -> None:
    assert recall_at_k(["a", "b"], ["x", "a", "y", "b"], 2) == 0.5
    assert recall_at_k(["a", "b"], ["x", "a", "y", "b"], 4) == 1.0
    assert recall_at_k(["a"], [None, "b"], 5) == 0.0


@pytest.mark.skipif(not LOCOMO_DIR.is_dir(), reason="LoCoMo dev data not present")
def test_the_dev_conversations_load_as_the_readme_describes() -> None:
    assert DEFAULT_DATA_DIR.resolve() == LOCOMO_DIR.resolve()
    conversations = load_conversations(LOCOMO_DIR)
    assert [c.name for c in conversations] == [
        "conv-26",
        "conv-30",
        "conv-41",
        "conv-42",
        "conv-43",
    ]
    assert sum(len(c.turns) for c in conversations) == 2760
    assert sum(len(c.questions) for c in conversations) == 997
    assert sum(c.skipped_questions for c in conversations) == 2
    conv26 = conversations[0]
    multi = [q for q in conv26.questions if q.evidence == ("D8:6", "D9:17")]
    assert multi, "the 'D8:6; D9:17' entry must split into two ids"
    for c in conversations:
        ids = [t.dia_id for t in c.turns]
        assert len(ids) == len(set(ids))
        assert all("session_date_time" in t.raw_data for t in c.turns)
