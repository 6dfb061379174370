"""Text extraction: golden files for real memories, and one test per promised behaviour.

Regenerate the golden files after an intended change of the text format, then read the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q memory_pipeline_tests/test_extraction.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from memory_pipeline.extraction import (
    MAX_SEARCH_TEXT_CHARS,
    ExtractedMemory,
    extract_memory,
)
from memory_pipeline.extraction.key_paths import MAX_KEY_PATH_DEPTH, MAX_KEY_PATH_NODES
from memory_pipeline.extraction.work_log import MAX_GOTCHAS, MAX_KEY_CHANGES, MAX_TAGS

# The repository and shared/ sit side by side (here /work/main and /work/shared; in CI the
# clone and ../shared).
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEED_DIR = DATA_DIR / "seed-memories"
SEED_CATEGORIES = ("work_logs", "memory_logs", "conversations", "mental_notes")
LOCOMO_FILE = DATA_DIR / "locomo-dev" / "conv-26.json"
# Session 1 turns of conv-26: plain ones, and D1:5 / D1:12, which share a photo.
LOCOMO_TURN_IDS = ("D1:1", "D1:2", "D1:3", "D1:5", "D1:12")
GOLDEN_DIR = Path(__file__).parent / "golden" / "extraction"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"


def _locomo_turn(dia_id: str) -> dict[str, Any]:
    """A LoCoMo turn as the LoCoMo loader stores it: the turn plus its session and time."""
    conversation = json.loads(LOCOMO_FILE.read_text(encoding="utf-8"))
    turn = next(turn for turn in conversation["session_1"] if turn["dia_id"] == dia_id)
    return {**turn, "session": 1, "session_date_time": conversation["session_1_date_time"]}


def _golden_cases() -> dict[str, Callable[[], Any]]:
    """Golden-file name → a function loading that case's raw_data."""
    cases: dict[str, Callable[[], Any]] = {}
    for category in SEED_CATEGORIES:
        for path in sorted((SEED_DIR / category).glob("*.json")):
            cases[f"{category}/{path.stem}"] = lambda path=path: json.loads(
                path.read_text(encoding="utf-8")
            )
    if LOCOMO_FILE.exists():
        for dia_id in LOCOMO_TURN_IDS:
            name = f"locomo/conv-26_{dia_id.replace(':', '-')}"
            cases[name] = lambda dia_id=dia_id: _locomo_turn(dia_id)
    return cases


GOLDEN_CASES = _golden_cases()


def _as_golden(result: ExtractedMemory) -> dict[str, Any]:
    # The text is stored as lines so the golden files can be read, and diffed, by eye.
    return {
        "memory_type": result.memory_type,
        "occurred_at": result.occurred_at.isoformat() if result.occurred_at else None,
        "truncated": result.truncated,
        "skip_reason": result.skip_reason,
        "text_lines": result.text.split("\n"),
    }


def test_seed_data_is_present() -> None:
    assert all(any((SEED_DIR / category).glob("*.json")) for category in SEED_CATEGORIES), (
        f"seed memories missing under {SEED_DIR}: shared/ must sit beside the repository"
    )
    assert LOCOMO_FILE.exists()


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_extraction_matches_golden_file(name: str) -> None:
    result = extract_memory(GOLDEN_CASES[name]())
    golden_path = GOLDEN_DIR / f"{name}.json"
    actual = _as_golden(result)
    if UPDATE_GOLDEN:
        golden_path.parent.mkdir(parents=True, exist_ok=True)
        golden_path.write_text(
            json.dumps(actual, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    assert golden_path.exists(), f"no golden file {golden_path}; run with UPDATE_GOLDEN=1"
    assert actual == json.loads(golden_path.read_text(encoding="utf-8"))


def test_every_golden_file_has_a_case() -> None:
    names = {
        str(path.relative_to(GOLDEN_DIR).with_suffix("")) for path in GOLDEN_DIR.rglob("*.json")
    }
    assert names == set(GOLDEN_CASES)


def test_seed_memories_all_give_text() -> None:
    for name, load in GOLDEN_CASES.items():
        result = extract_memory(load())
        assert result.text and result.skip_reason is None, name
        assert not result.truncated, name


# --- work logs ---------------------------------------------------------------------------------

WORK_LOG: dict[str, Any] = {
    "task": "fix-chromadb-query-errors",
    "agent": "claude-sonnet-4.5",
    "date": "2025-11-13",
    "component": "chromadb-vector-search",
    "temporal_context": {"year": 2025, "week_number": 46},
    "files_touched": ["src/client.py"],
    "summary": "ChromaDB queries broken",
    "root_cause": "Empty dict passed as where filter",
    "solution": {"approach": "Sanitize filters", "key_changes": ["repository.py: {} -> None"]},
    "gotchas": [
        {
            "issue": "ChromaDB rejects an empty where",
            "solution": "Pass None instead",
            "category": "integration",
            "severity": "medium",
        }
    ],
    "lesson": "Check how an API treats empty values",
    "tags": ["chromadb", "debugging"],
    "future_planning": {"architecture_decisions": {"hash_based_naming": "Short unique names"}},
}


def test_work_log_is_recognised_by_its_keys() -> None:
    assert extract_memory(WORK_LOG).memory_type == "work_log"
    assert extract_memory({"lesson": "Always pin torch"}).memory_type == "work_log"


def test_work_log_segments_come_in_order_of_search_value() -> None:
    text = extract_memory(WORK_LOG).text
    order = [
        "Task: fix-chromadb-query-errors.",
        "Component: chromadb-vector-search.",
        "Date: 13 November 2025.",
        "Summary: ChromaDB queries broken.",
        "Root cause: Empty dict passed as where filter.",
        "Lesson: Check how an API treats empty values.",
        "Solution: Sanitize filters.",
        "Key changes:\n- repository.py: {} -> None.",
        "Gotchas:",
        "Tags: chromadb, debugging.",
        "Files touched: src/client.py.",
        "Agent: claude-sonnet-4.5.",
    ]
    positions = [text.index(segment) for segment in order]
    assert positions == sorted(positions)
    assert text.startswith("Task: fix-chromadb-query-errors.\n")


def test_work_log_gotcha_keeps_issue_solution_category_and_severity() -> None:
    text = extract_memory(WORK_LOG).text
    assert (
        "- ChromaDB rejects an empty where. Solution: Pass None instead. [integration, medium]"
        in text
    )


def test_architecture_decisions_keep_name_and_rationale() -> None:
    text = extract_memory(WORK_LOG).text
    assert "Architecture decisions:\n- hash based naming: Short unique names." in text


def test_work_log_keeps_its_date_and_occurred_at() -> None:
    result = extract_memory(WORK_LOG)
    assert result.occurred_at == datetime(2025, 11, 13, tzinfo=UTC)
    assert "Date: 13 November 2025." in result.text


def test_temporal_context_restating_the_date_is_not_text() -> None:
    text = extract_memory(WORK_LOG).text
    assert "week_number" not in text and "temporal_context" not in text


def test_unknown_work_log_fields_are_kept_as_key_paths() -> None:
    text = extract_memory({**WORK_LOG, "user_context": {"style": "rapid-debugging"}}).text
    assert text.endswith("user_context.style: rapid-debugging")


def test_list_fields_are_capped() -> None:
    work_log = {
        "summary": "Many things",
        "tags": [f"tag{i}" for i in range(MAX_TAGS + 7)],
        "solution": {"key_changes": [f"change {i}" for i in range(MAX_KEY_CHANGES + 3)]},
        "gotchas": [{"issue": f"issue {i}"} for i in range(MAX_GOTCHAS + 2)],
    }
    text = extract_memory(work_log).text
    assert f"tag{MAX_TAGS - 1} (+7 more)." in text
    assert f"- change {MAX_KEY_CHANGES - 1}.\n- (+3 more)" in text
    assert f"- issue {MAX_GOTCHAS - 1}.\n- (+2 more)" in text
    assert f"issue {MAX_GOTCHAS}." not in text


def test_plain_string_solution_is_written() -> None:
    text = extract_memory({"task": "t", "solution": "Restart the worker"}).text
    assert "Solution: Restart the worker." in text


def test_wrapper_is_unwrapped_and_inner_ids_are_not_text() -> None:
    raw = {
        "user_id": "outer-user-7",
        "project_id": "outer-project-8",
        "session_id": "outer-session-9",
        "datetime": "2025-11-19T07:56:43",
        "memory_log": {
            "task": "wrapped task",
            "summary": "Wrapped summary",
            "user_id": "inner-user-1",
            "memory_log_id": "inner-log-2",
            "sessionId": "inner-session-3",
        },
    }
    result = extract_memory(raw)
    assert result.memory_type == "work_log"
    assert result.text.startswith("Task: wrapped task.")
    assert "Summary: Wrapped summary." in result.text
    for identifier in ("outer-", "inner-", "memory_log", "user_id", "session"):
        assert identifier not in result.text


def test_wrapper_time_is_used_when_the_memory_has_none() -> None:
    raw = {"datetime": "2025-11-19T07:56:43", "memory_log": {"task": "t", "summary": "s"}}
    result = extract_memory(raw)
    assert result.occurred_at == datetime(2025, 11, 19, 7, 56, 43, tzinfo=UTC)
    assert "Date: 19 November 2025." in result.text


def test_memory_time_beats_wrapper_time() -> None:
    raw = {"datetime": "2025-11-19T07:56:43", "memory_log": {"task": "t", "date": "2025-01-02"}}
    assert extract_memory(raw).occurred_at == datetime(2025, 1, 2, tzinfo=UTC)


# --- conversations -----------------------------------------------------------------------------


def test_conversation_turn_keeps_date_and_speaker() -> None:
    turn = {
        "speaker": "Caroline",
        "dia_id": "D1:5",
        "text": "Hey Mel!",
        "blip_caption": "a photo of a lake",
        "img_url": ["https://example.com/lake.jpg"],
        "query": "lake sunrise",
        "session": 1,
        "session_date_time": "1:56 pm on 8 May, 2023",
    }
    result = extract_memory(turn)
    assert result.memory_type == "conversation_turn"
    assert result.text == "[8 May 2023] Caroline: Hey Mel! (photo: a photo of a lake)"
    assert result.occurred_at == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def test_turn_bookkeeping_is_not_text() -> None:
    text = extract_memory(_locomo_turn("D1:5")).text
    for bookkeeping in ("D1:5", "i.redd.it", "transgender pride flag mural", "session"):
        assert bookkeeping not in text


def test_speaker_makes_a_turn_even_with_work_log_keys() -> None:
    result = extract_memory({"speaker": "Bob", "text": "Done", "task": "deploy"})
    assert result.memory_type == "conversation_turn"
    assert result.text.startswith("Bob: Done")


def test_turn_without_time_has_no_date_prefix() -> None:
    assert extract_memory({"role": "user", "content": "hello"}).text == "user: hello"


def test_turn_time_nobody_can_parse_is_kept_verbatim() -> None:
    result = extract_memory({"speaker": "Ann", "text": "hi", "timestamp": "last Tuesday"})
    assert result.text == "[last Tuesday] Ann: hi"
    assert result.occurred_at is None


def test_turn_with_only_a_speaker_is_skipped() -> None:
    result = extract_memory({"speaker": "Ann", "text": "  ", "session_date_time": "8 May 2023"})
    assert result.text == "" and result.skip_reason


def test_stored_conversation_is_role_lines_in_order() -> None:
    raw = {
        "conversation_id": "c-42",
        "model": "gpt-4",
        "created_at": "2025-11-19T13:18:07",
        "conversation": [
            {"role": "user", "message_id": "m-1", "text": "he;;p"},
            {"role": "assistant", "message_id": "m-2", "text": "Hi there!\r\nHow can I help?"},
        ],
    }
    result = extract_memory(raw)
    assert result.memory_type == "conversation_turn"
    assert result.text == (
        "[19 November 2025] Conversation (gpt-4)\nuser: he;;p\nassistant: Hi there!\nHow can I help?"
    )


def test_conversation_without_any_text_is_skipped() -> None:
    raw = {"model": "gpt-4", "conversation": [{"role": "user", "text": ""}]}
    result = extract_memory(raw)
    assert result.text == "" and result.skip_reason


# --- notes -------------------------------------------------------------------------------------


def test_content_makes_a_note() -> None:
    raw = {"task": "Python test", "content": "Testing file storage", "tags": ["test"]}
    result = extract_memory(raw)
    assert result.memory_type == "note"
    assert result.text == "Task: Python test.\nTesting file storage\nTags: test."


def test_content_beside_work_log_fields_is_a_work_log() -> None:
    result = extract_memory({"summary": "Refactor", "content": "Details"})
    assert result.memory_type == "work_log"
    assert "Content: Details." in result.text


def test_zero_start_time_is_no_time() -> None:
    result = extract_memory({"sessionId": "1", "startTime": 0, "content": "my note"})
    assert result.occurred_at is None
    assert result.text == "my note"


# --- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1:56 pm on 8 May, 2023", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("12:09 am on 13 September, 2023", datetime(2023, 9, 13, 0, 9, tzinfo=UTC)),
        ("2025-11-17T20:24:00.000000", datetime(2025, 11, 17, 20, 24, tzinfo=UTC)),
        ("2025-11-13", datetime(2025, 11, 13, tzinfo=UTC)),
        ("2025-11-13T10:00:00+02:00", datetime(2025, 11, 13, 8, tzinfo=UTC)),
        ("2025-11-13T10:00:00Z", datetime(2025, 11, 13, 10, tzinfo=UTC)),
        ("8 May 2023", datetime(2023, 5, 8, tzinfo=UTC)),
        ("May 8, 2023", datetime(2023, 5, 8, tzinfo=UTC)),
        (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1_700_000_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (0, None),
        (-5, None),
        (True, None),
        (1e300, None),
        ("yesterday", None),
        ("31 February 2023", None),
        ("13:00 pm on 8 May, 2023", None),
    ],
)
def test_occurred_at_is_the_memorys_own_time_in_utc(value: Any, expected: datetime | None) -> None:
    result = extract_memory({"content": "note", "timestamp": value})
    assert result.occurred_at == expected
    if result.occurred_at is not None:
        assert result.occurred_at.utcoffset() == timedelta(0)


def test_aware_time_keeps_its_instant() -> None:
    moment = datetime(2024, 2, 29, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    result = extract_memory({"content": "note", "date": moment.isoformat()})
    assert result.occurred_at == moment


# --- unknown shapes and bad input ---------------------------------------------------------------


def test_unknown_shape_falls_back_to_key_paths() -> None:
    raw = {
        "a": {"b": [{"c": "first"}, {"c": "second", "n": 3}], "flag": True},
        "labels": ["x", "y"],
        "nothing": None,
        "order_id": "o-123",
    }
    result = extract_memory(raw)
    assert result.memory_type == "other"
    assert result.text == (
        "a.b[0].c: first\na.b[1].c: second\na.b[1].n: 3\na.flag: true\nlabels: x, y"
    )


def test_unknown_shape_with_many_fields_is_cut_at_the_text_cap() -> None:
    raw = {f"key{i}": f"value {i}" for i in range(100_000)}
    result = extract_memory(raw)
    assert result.truncated and len(result.text) == MAX_SEARCH_TEXT_CHARS
    assert result.text.startswith("key0: value 0\nkey1: value 1\n")


def test_unknown_shape_walk_is_bounded_in_nodes_and_depth() -> None:
    past_the_node_cap = {"nulls": [None] * MAX_KEY_PATH_NODES, "late": "unreached"}
    assert extract_memory(past_the_node_cap).skip_reason
    deep: Any = "unreached"
    for _ in range(MAX_KEY_PATH_DEPTH):
        deep = {"k": deep}
    assert extract_memory({"top": "kept", "deep": deep}).text == "top: kept"


@pytest.mark.parametrize("raw", [[], ["a"], "a string", 7, 1.5, True, None])
def test_non_object_json_is_skipped_with_reason(raw: Any) -> None:
    result = extract_memory(raw)
    assert result.text == ""
    assert result.skip_reason and "not an object" in result.skip_reason


def test_empty_object_is_skipped_with_reason() -> None:
    result = extract_memory({})
    assert result.text == "" and result.skip_reason == "raw_data is an empty object"


@pytest.mark.parametrize(
    "raw",
    [{"a": 1, "b": [True, None]}, {"user_id": "u", "session_id": "s"}, {"text": " \x00\t "}],
)
def test_object_without_string_content_is_skipped(raw: dict[str, Any]) -> None:
    result = extract_memory(raw)
    assert result.text == "" and result.skip_reason


def test_deep_nesting_does_not_raise() -> None:
    deep: Any = "bottom"
    for level in range(10_000):
        deep = {"k": deep} if level % 2 else [deep]
    for raw in ({"top": "visible", "deep": deep}, {"summary": deep, "lesson": "kept"}):
        result = extract_memory(raw)
        assert result.skip_reason is None
        assert "visible" in result.text or "Lesson: kept." in result.text
    assert extract_memory({"deep": deep}).skip_reason  # the only text is out of reach


# --- the text cap and cleaning ------------------------------------------------------------------


def test_text_over_cap_is_cut_and_marked_truncated() -> None:
    result = extract_memory({"summary": "start " + "word " * 20_000, "lesson": "end"})
    assert len(result.text) == MAX_SEARCH_TEXT_CHARS
    assert result.truncated
    assert result.text.startswith("Summary: start word")


def test_text_under_cap_is_not_cut() -> None:
    body = "x" * (MAX_SEARCH_TEXT_CHARS - len("Task: .") - 1)
    result = extract_memory({"task": body})
    assert result.text == f"Task: {body}."
    assert len(result.text) == MAX_SEARCH_TEXT_CHARS - 1
    assert not result.truncated


def test_text_exactly_at_cap_is_not_truncated() -> None:
    body = "x" * (MAX_SEARCH_TEXT_CHARS - len("Task: ."))
    result = extract_memory({"task": body})
    assert len(result.text) == MAX_SEARCH_TEXT_CHARS
    assert not result.truncated


def test_huge_string_is_cut_not_dropped() -> None:
    result = extract_memory({"content": "abc " * 5_000_000})
    assert result.truncated
    assert len(result.text) == MAX_SEARCH_TEXT_CHARS
    assert result.text.startswith("abc abc")


def test_whitespace_padding_does_not_cost_the_text_behind_it() -> None:
    result = extract_memory({"content": " " * 500_000 + "needle"})
    assert result.text == "needle"
    assert not result.truncated


def test_control_characters_are_removed_and_whitespace_normalised() -> None:
    result = extract_memory({"content": "a\x00b\x07c\r\nd  \t e\u00a0f\n\n\n\ng\u2028h \n"})
    assert result.text == "abc\nd e f\n\ng\nh"


def test_lone_surrogates_are_removed_so_text_encodes_as_utf8() -> None:
    result = extract_memory({"content": "broken \ud800 pair \udfff end"})
    assert result.text == "broken pair end"
    result.text.encode("utf-8")


def test_odd_unicode_is_kept() -> None:
    text = "שלום עולם 🙂👩🏽‍💻 e\u0301 \u202eevil"
    result = extract_memory({"content": text})
    assert "שלום עולם" in result.text
    assert "🙂👩🏽‍💻" in result.text
    assert "é" in result.text  # combining accent composed (NFC)
    assert "\u202eevil" in result.text


def test_non_string_keys_and_values_do_not_raise() -> None:
    result = extract_memory({1: "one", "x": {2: ["two", 2.5]}, "big": 10**5000})
    assert result.text == "1: one\nx.2: two, 2.5"


def test_extraction_is_deterministic() -> None:
    for load in GOLDEN_CASES.values():
        raw = load()
        assert extract_memory(raw) == extract_memory(raw)
