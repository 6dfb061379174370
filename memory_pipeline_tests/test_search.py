"""Search semantics (DESIGN §5): modes, filters, min_similarity, temporal decay, search_many."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search import DEFAULT_MODE, SEARCH_BACKENDS, SEARCH_MODES, SearchResult
from memory_pipeline.tenancy import Tenant

NOTES = {
    "postgres": "The nightly backup of the Postgres database failed because the disk was full.",
    "chroma": "Chroma collections are created per tenant with cosine distance.",
    "dagster": "The Dagster sensor polls pending rows every five seconds.",
    "cooking": "Grandma's lasagna recipe needs ricotta, basil and slow baking.",
    "hiking": "We hiked up the volcano at sunrise and saw the crater lake.",
}


def _seed(
    store: MemoryStore, tenant: Tenant, notes: dict[str, str], **kwargs: Any
) -> dict[str, int]:
    ids = {
        key: store.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": text}, external_id=key, **kwargs
        )
        for key, text in notes.items()
    }
    store.process_pending(tenant.user_id, tenant.project_id)
    return ids


@pytest.fixture(scope="module")
def seeded(store: MemoryStore) -> tuple[Tenant, dict[str, int]]:
    import uuid

    tenant = Tenant(f"search-{uuid.uuid4().hex[:8]}", "notes")
    return tenant, _seed(store, tenant, NOTES)


@pytest.mark.parametrize("backend", SEARCH_BACKENDS)
@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_the_right_memory_comes_first_in_every_mode_and_backend(
    store: MemoryStore, seeded: tuple[Tenant, dict[str, int]], mode: str, backend: str
) -> None:
    tenant, ids = seeded
    results = store.search_similar_memories(
        "why did the postgres database backup fail?",
        tenant.user_id,
        tenant.project_id,
        limit=3,
        mode=mode,
        backend=backend,
    )
    assert results and results[0].log_id == ids["postgres"]
    assert results[0].external_id == "postgres"
    assert results[0].text.startswith("The nightly backup")
    assert results[0].raw_data == {"content": NOTES["postgres"]}
    assert results[0].occurred_at.tzinfo is not None
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_the_default_mode_is_hybrid_and_used_when_no_mode_is_given(
    store: MemoryStore, seeded: tuple[Tenant, dict[str, int]]
) -> None:
    tenant, _ = seeded
    assert DEFAULT_MODE == "hybrid"
    query = "dagster sensor polling"
    plain = store.search_similar_memories(query, tenant.user_id, tenant.project_id)
    hybrid = store.search_similar_memories(query, tenant.user_id, tenant.project_id, mode="hybrid")
    assert [r.log_id for r in plain] == [r.log_id for r in hybrid]


def test_an_unknown_tenant_gives_an_empty_list(store: MemoryStore) -> None:
    for mode in SEARCH_MODES:
        assert store.search_similar_memories("anything", "no-such-user", "nope", mode=mode) == []
    assert store.search_many(["a", "b"], "no-such-user", "nope") == [[], []]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "semantic"},
        {"backend": "faiss"},
        {"limit": 0},
        {"limit": 1001},
        {"min_similarity": 1.5},
        {"enable_temporal_decay": True, "half_life_days": 0},
        {"memory_types": "note"},
        {"since": "2024-01-01"},
    ],
    ids=repr,
)
def test_bad_arguments_raise_value_error(
    store: MemoryStore, seeded: tuple[Tenant, dict[str, int]], kwargs: dict[str, Any]
) -> None:
    tenant, _ = seeded
    with pytest.raises(ValueError):
        store.search_similar_memories("backup", tenant.user_id, tenant.project_id, **kwargs)


def test_an_empty_query_is_rejected(store: MemoryStore) -> None:
    with pytest.raises(ValueError):
        store.search_similar_memories("  ", "u", "p")


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_similarity_is_the_raw_cosine_in_every_mode(
    store: MemoryStore, seeded: tuple[Tenant, dict[str, int]], mode: str
) -> None:
    tenant, ids = seeded
    query = "postgres backup disk full"
    (result,) = store.search_similar_memories(
        query, tenant.user_id, tenant.project_id, limit=1, mode=mode
    )
    vectors = store.embedder.embed_batch([query, NOTES["postgres"]])
    assert result.log_id == ids["postgres"]
    assert result.similarity == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-3)


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_min_similarity_drops_results_below_the_raw_cosine_threshold(
    store: MemoryStore, seeded: tuple[Tenant, dict[str, int]], mode: str
) -> None:
    tenant, _ = seeded
    query = "backup of the postgres database"
    everything = store.search_similar_memories(
        query, tenant.user_id, tenant.project_id, limit=10, mode="vector", min_similarity=-1.0
    )
    assert len(everything) == len(NOTES)
    # the default min_similarity (0.0) already drops memories pointing away from the query
    default = store.search_similar_memories(
        query, tenant.user_id, tenant.project_id, limit=10, mode=mode
    )
    non_negative = {r.log_id for r in everything if r.similarity >= 0}
    if mode == "keyword":  # only memories sharing a word with the query are candidates
        assert {r.log_id for r in default} <= non_negative
    else:
        assert {r.log_id for r in default} == non_negative
    threshold = (everything[0].similarity + everything[1].similarity) / 2
    kept = store.search_similar_memories(
        query, tenant.user_id, tenant.project_id, limit=10, mode=mode, min_similarity=threshold
    )
    assert [r.log_id for r in kept] == [everything[0].log_id]
    assert all(r.similarity >= threshold for r in kept)
    assert (
        store.search_similar_memories(
            query, tenant.user_id, tenant.project_id, mode=mode, min_similarity=0.999
        )
        == []
    )


def test_temporal_decay_halves_the_score_every_half_life_and_re_sorts(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant("decay")
    now = datetime.now(UTC)
    old = store.create_memory_log(
        tenant.user_id,
        tenant.project_id,
        {"content": "The database migration timed out during the deployment."},
        occurred_at=now - timedelta(days=90),
    )
    recent = store.create_memory_log(
        tenant.user_id,
        tenant.project_id,
        {"content": "The deployment had a problem with the database."},
        occurred_at=now - timedelta(days=1),
    )
    store.process_pending(tenant.user_id, tenant.project_id)
    query = "database migration timed out"
    plain = store.search_similar_memories(query, tenant.user_id, tenant.project_id, mode="vector")
    assert [r.log_id for r in plain] == [old, recent]
    decayed = store.search_similar_memories(
        query,
        tenant.user_id,
        tenant.project_id,
        mode="vector",
        enable_temporal_decay=True,
        half_life_days=30.0,
    )
    assert [r.log_id for r in decayed] == [recent, old]
    for r in decayed:
        age_days = (datetime.now(UTC) - r.occurred_at).total_seconds() / 86400
        assert r.score == pytest.approx(r.similarity * 0.5 ** (age_days / 30.0), rel=1e-3)
    # min_similarity still applies to the raw cosine, not the decayed score
    best = plain[0].similarity
    kept = store.search_similar_memories(
        query,
        tenant.user_id,
        tenant.project_id,
        mode="vector",
        enable_temporal_decay=True,
        min_similarity=best - 1e-4,
    )
    assert [r.log_id for r in kept] == [old]
    assert kept[0].score < kept[0].similarity / 4


@pytest.mark.parametrize("backend", SEARCH_BACKENDS)
@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_filters_restrict_results_in_every_mode_and_backend(
    store: MemoryStore, new_tenant: Callable[..., Tenant], mode: str, backend: str
) -> None:
    tenant = new_tenant("filters")
    now = datetime.now(UTC)
    note = store.create_memory_log(
        tenant.user_id,
        tenant.project_id,
        {"content": "Rotate the API keys every month."},
        occurred_at=now - timedelta(days=10),
    )
    turn = store.create_memory_log(
        tenant.user_id,
        tenant.project_id,
        {"speaker": "Ana", "text": "Did you rotate the API keys?", "timestamp": now.isoformat()},
    )
    store.process_pending(tenant.user_id, tenant.project_id)
    query = "rotate API keys"

    def ids(**kwargs: Any) -> set[int]:
        results = store.search_similar_memories(
            query, tenant.user_id, tenant.project_id, mode=mode, backend=backend, **kwargs
        )
        return {r.log_id for r in results}

    assert ids() == {note, turn}
    assert ids(memory_types=["note"]) == {note}
    assert ids(memory_types=["conversation_turn", "work_log"]) == {turn}
    assert ids(where_filter={"memory_type": {"$ne": "note"}}) == {turn}
    assert ids(where_filter={"log_id": {"$in": [note]}}) == {note}
    assert ids(where_filter={"log_id": {"$nin": [note]}}) == {turn}
    assert ids(since=now - timedelta(days=1)) == {turn}
    assert ids(until=now - timedelta(days=5)) == {note}
    assert ids(where_filter={"occurred_at": {"$lt": (now - timedelta(days=5)).timestamp()}}) == {
        note
    }
    assert ids(where_filter={"$or": [{"log_id": note}, {"log_id": turn}]}) == {note, turn}
    assert (
        ids(where_filter={"$and": [{"log_id": note}, {"memory_type": "conversation_turn"}]})
        == set()
    )
    assert ids(where_filter={"user_id": "someone-else"}) == set()


def test_search_many_embeds_all_queries_in_one_call(
    store: MemoryStore, seeded: tuple[Tenant, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, ids = seeded
    calls: list[int] = []
    original = store.embedder.embed_queries

    def counting(texts: list[str]) -> Any:
        calls.append(len(texts))
        return original(texts)

    monkeypatch.setattr(store.embedder, "embed_queries", counting)
    queries = ["postgres backup", "lasagna recipe", "volcano sunrise hike", "dagster sensor"]
    for mode in SEARCH_MODES:
        calls.clear()
        results = store.search_many(queries, tenant.user_id, tenant.project_id, limit=2, mode=mode)
        assert calls == [len(queries)]
        assert [r[0].log_id for r in results] == [
            ids["postgres"],
            ids["cooking"],
            ids["hiking"],
            ids["dagster"],
        ]


def test_search_results_serialise_to_json(
    store: MemoryStore, seeded: tuple[Tenant, dict[str, int]]
) -> None:
    tenant, _ = seeded
    (result,) = store.search_similar_memories("lasagna", tenant.user_id, tenant.project_id, limit=1)
    assert isinstance(result, SearchResult)
    doc = result.to_json()
    assert set(doc) >= {
        "log_id",
        "external_id",
        "score",
        "similarity",
        "text",
        "memory_type",
        "occurred_at",
        "created_at",
        "raw_data",
    }
    assert datetime.fromisoformat(doc["occurred_at"]).tzinfo is not None


def test_a_conversation_turn_is_found_through_the_turn_it_answers(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    """Hybrid mode lets a reply inherit part of its neighbour's score (conversation context)."""
    tenant = new_tenant("context")
    when = "2023-05-08T13:56:00+00:00"
    turns = [
        ("Mia", "What did you paint last weekend?"),
        ("Leo", "A sunrise over the harbour, in oils."),
        ("Mia", "My cat knocked over the plants again."),
        ("Leo", "Cats love to do that."),
    ]
    ids = [
        store.create_memory_log(
            tenant.user_id,
            tenant.project_id,
            {"speaker": s, "text": t, "timestamp": when},
        )
        for s, t in turns
    ]
    store.process_pending(tenant.user_id, tenant.project_id)
    results = store.search_similar_memories(
        "What did Leo paint?", tenant.user_id, tenant.project_id, limit=2, mode="hybrid"
    )
    assert {r.log_id for r in results} == {ids[0], ids[1]}
