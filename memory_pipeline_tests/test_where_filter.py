"""``where_filter``: Chroma's operator language over the known metadata keys, nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search import validate_where_filter
from memory_pipeline.search.filters import where_to_sql

VALID_FILTERS: list[dict[str, Any]] = [
    {"memory_type": "note"},
    {"memory_type": {"$eq": "note"}},
    {"memory_type": {"$ne": "note"}},
    {"log_id": {"$in": [1, 2, 3]}},
    {"log_id": {"$nin": [4]}},
    {"occurred_at": {"$gt": 1.5}},
    {"occurred_at": {"$gte": 1}},
    {"occurred_at": {"$lt": 2_000_000_000}},
    {"occurred_at": {"$lte": 2_000_000_000.0}},
    {"embedding_model": "m"},
    {"user_id": "u"},
    {"project_id": {"$in": ["p", "q"]}},
    {"$and": [{"memory_type": "note"}, {"occurred_at": {"$gte": 0}}]},
    {"$or": [{"memory_type": "note"}, {"$and": [{"log_id": 1}, {"log_id": {"$ne": 2}}]}]},
]

INVALID_FILTERS: list[Any] = [
    {},
    [],
    "memory_type = 'note'",
    {"status": "embedded"},  # a column, but not a metadata key
    {"search_text": {"$eq": "x"}},
    {"memory_type; DROP TABLE memory_log; --": "note"},
    {"memory_type": {"$regex": ".*"}},
    {"memory_type": {"$contains": "note"}},
    {"memory_type": {"$like": "%"}},
    {"$not": [{"memory_type": "note"}]},
    {"$and": [{"memory_type": "note"}]},  # Chroma wants at least two
    {"$and": {"memory_type": "note"}},
    {"$or": []},
    {"memory_type": "note", "log_id": 1},  # several keys: use $and
    {"memory_type": {"$eq": "note", "$ne": "x"}},
    {"memory_type": {}},
    {"memory_type": 3},
    {"log_id": "1 OR 1=1"},
    {"log_id": True},
    {"log_id": {"$in": []}},
    {"log_id": {"$in": 1}},
    {"log_id": {"$in": [1, "2"]}},
    {"occurred_at": {"$gt": "2024-01-01"}},
    {"memory_type": {"$in": [None]}},
    {1: "x"},
]


@pytest.mark.parametrize("where", VALID_FILTERS, ids=repr)
def test_where_filter_accepts_chroma_operators_over_known_keys(where: dict[str, Any]) -> None:
    validate_where_filter(where)


@pytest.mark.parametrize("where", INVALID_FILTERS, ids=repr)
def test_where_filter_rejects_unknown_keys_operators_and_shapes(where: Any) -> None:
    with pytest.raises(ValueError, match="where_filter"):
        validate_where_filter(where)


def test_where_filter_rejects_deep_nesting() -> None:
    where: dict[str, Any] = {"memory_type": "note"}
    for _ in range(40):
        where = {"$and": [where, {"log_id": {"$gte": 0}}]}
    with pytest.raises(ValueError, match="nested too deeply"):
        validate_where_filter(where)


def test_where_filter_values_are_bound_as_literals_not_sql(store: MemoryStore) -> None:
    hostile = "note' OR '1'='1"
    for where in (
        {"memory_type": hostile},
        {"memory_type": {"$in": [hostile, "x"]}},
        {"$or": [{"user_id": "') OR true; --"}, {"project_id": {"$nin": ["a", "b'}"]}}]},
    ):
        validate_where_filter(where)
        with store.db.connection() as conn:
            condition = where_to_sql(where).as_string(conn)
            row = conn.execute(
                "SELECT count(*) AS n FROM memory_log m WHERE m.id < 0 AND " + condition
            ).fetchone()
        assert row["n"] == 0


def test_search_rejects_an_invalid_where_filter_before_touching_any_tenant(
    store: MemoryStore,
) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        store.search_similar_memories("anything", "nobody", "nothing", where_filter={"x": 1})
    with pytest.raises(ValueError, match="unknown operator"):
        store.search_similar_memories(
            "anything", "nobody", "nothing", where_filter={"memory_type": {"$where": "1"}}
        )
