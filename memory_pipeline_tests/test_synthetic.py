"""The benchmarks' synthetic work logs: deterministic, valid raw_data, realistic text."""

from __future__ import annotations

import json

from memory_pipeline.extraction import extract_memory
from memory_pipeline.memories import validate_raw_data
from memory_pipeline_bench.synthetic import MAX_WORDS, MIN_WORDS, search_query, work_log, work_logs


def test_the_same_seed_and_index_give_the_same_document() -> None:
    first = [json.dumps(d, sort_keys=True) for d in work_logs(50, seed=3)]
    again = [json.dumps(d, sort_keys=True) for d in work_logs(50, seed=3)]
    assert first == again


def test_a_document_does_not_depend_on_what_was_generated_before_it() -> None:
    assert list(work_logs(5, seed=1, start=20)) == [work_log(i, seed=1) for i in range(20, 25)]


def test_different_seeds_give_different_corpora() -> None:
    assert list(work_logs(10, seed=0)) != list(work_logs(10, seed=1))


def test_documents_are_valid_raw_data() -> None:
    for doc in work_logs(200):
        assert validate_raw_data(doc, 1024 * 1024) == doc


def test_documents_extract_to_work_logs_of_20_to_200_words() -> None:
    for doc in work_logs(300):
        extracted = extract_memory(doc)
        assert extracted.memory_type == "work_log"
        assert extracted.occurred_at is not None
        assert MIN_WORDS <= len(extracted.text.split()) <= MAX_WORDS, extracted.text


def test_texts_vary() -> None:
    texts = {extract_memory(doc).text for doc in work_logs(300)}
    assert len(texts) == 300
    vocabulary = {word for text in texts for word in text.lower().split()}
    assert len(vocabulary) > 300


def test_some_documents_come_in_the_seed_wrapper() -> None:
    wrapped = [d for d in work_logs(200) if "memory_log" in d]
    assert 0 < len(wrapped) < 200
    assert all({"user_id", "project_id", "session_id", "datetime"} <= d.keys() for d in wrapped)


def test_search_queries_are_deterministic_non_empty_strings() -> None:
    queries = [search_query(i) for i in range(20)]
    assert queries == [search_query(i) for i in range(20)]
    assert all(q.strip() for q in queries)
