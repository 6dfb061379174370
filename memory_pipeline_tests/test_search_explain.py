"""Explained scores (issue 18): ``explain=True`` says why each memory ranked where it did."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search import SEARCH_MODES, SearchResult
from memory_pipeline.tenancy import Tenant

TURNS = [
    ("Mia", "What did you paint last weekend?"),
    ("Leo", "A sunrise over the harbour, in oils."),
    ("Mia", "My cat knocked over the plants again."),
    ("Leo", "Cats love to do that. The harbour cats are worse."),
    ("Mia", "Are you painting the harbour again next week?"),
    ("Leo", "Maybe the lighthouse instead, at dusk."),
]
NOTES = [
    "Painting supplies: oils, linseed, two brushes for the harbour series.",
    "Long note. "
    + " ".join(f"Paragraph {i} about nothing in particular." for i in range(120))
    + " The last paragraph mentions the harbour sunrise painting.",
]
QUERY = "What did Leo paint at the harbour?"


@pytest.fixture(scope="module")
def tenant(store: MemoryStore) -> Tenant:
    tenant = Tenant(f"explain-{uuid.uuid4().hex[:8]}", "talk")
    start = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    for n, (speaker, text) in enumerate(TURNS):
        when = (start + timedelta(minutes=n)).isoformat()
        store.create_memory_log(
            tenant.user_id, tenant.project_id, {"speaker": speaker, "text": text, "timestamp": when}
        )
    for n, text in enumerate(NOTES):
        store.create_memory_log(
            tenant.user_id,
            tenant.project_id,
            {"content": text},
            occurred_at=start - timedelta(days=40 * (n + 1)),
        )
    store.process_pending(tenant.user_id, tenant.project_id)
    return tenant


def reproduced_score(explanation: dict) -> float:
    """The final score from the explanation's parts."""
    base = explanation["fusion"]["score"]
    if explanation["context"]:
        base += explanation["context"]["bonus"]
    if explanation["sitting"]:
        base += explanation["sitting"]["bonus"]
    for factor in (explanation.get("cues") or {}).values():
        base *= factor
    if explanation["decay"]:
        base *= explanation["decay"]["factor"]
    return base


def assert_order_reproduced(results: list[SearchResult]) -> None:
    assert results
    for r in results:
        assert r.explanation is not None
        assert reproduced_score(r.explanation) == pytest.approx(r.score, abs=1e-12)
        assert r.explanation["score"] == r.score
    order = sorted(results, key=lambda r: (-reproduced_score(r.explanation), r.log_id))
    assert [r.log_id for r in order] == [r.log_id for r in results]


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_each_result_explains_its_retrievers_fusion_and_matched_chunk(
    store: MemoryStore, tenant: Tenant, mode: str
) -> None:
    results = store.search_similar_memories(
        QUERY, tenant.user_id, tenant.project_id, limit=8, mode=mode, explain=True
    )
    assert results
    for r in results:
        why = r.explanation
        assert why is not None and why["mode"] == mode
        assert set(why) >= {
            "vector",
            "keyword",
            "fusion",
            "context",
            "sitting",
            "decay",
            "score",
            "similarity",
            "min_similarity",
            "matched_chunk",
        }
        assert why["similarity"] == r.similarity
        assert why["min_similarity"] == 0.0
        chunk = why["matched_chunk"]
        assert chunk["text"] and chunk["text"] in r.text
        assert chunk["similarity"] == pytest.approx(r.similarity, abs=1e-6)
        if mode != "keyword":
            assert why["vector"]["rank"] >= 1 and -1.0 <= why["vector"]["similarity"] <= 1.0
        if mode != "vector" and why["keyword"] is not None:
            assert why["keyword"]["rank"] >= 1 and why["keyword"]["bm25"] > 0
    assert_order_reproduced(results)
    if mode == "hybrid":
        assert any(r.explanation["context"] for r in results)  # a turn answered a question
        assert any(r.explanation["sitting"] for r in results)  # the best turn's sitting
        assert all(0.0 <= r.explanation["fusion"]["vector_normalised"] <= 1.0 for r in results)


def test_the_matched_chunk_of_a_long_memory_is_the_chunk_that_matched(
    store: MemoryStore, tenant: Tenant
) -> None:
    (long,) = [
        r
        for r in store.search_similar_memories(
            "harbour sunrise painting", tenant.user_id, tenant.project_id, limit=8, explain=True
        )
        if r.text.startswith("Long note.")
    ]
    chunk = long.explanation["matched_chunk"]
    assert chunk["index"] > 0 and "harbour sunrise" in chunk["text"]


def test_decay_is_explained_and_the_explanation_still_reproduces_the_order(
    store: MemoryStore, tenant: Tenant
) -> None:
    results = store.search_similar_memories(
        QUERY,
        tenant.user_id,
        tenant.project_id,
        limit=8,
        enable_temporal_decay=True,
        half_life_days=10.0,
        explain=True,
    )
    assert all(0.0 < r.explanation["decay"]["factor"] <= 1.0 for r in results)
    assert_order_reproduced(results)


def test_search_many_explains_every_query(store: MemoryStore, tenant: Tenant) -> None:
    many = store.search_many(
        [QUERY, "cats and plants"], tenant.user_id, tenant.project_id, limit=5, explain=True
    )
    for results in many:
        assert_order_reproduced(results)


def test_explanations_are_off_by_default_and_absent_from_json(
    store: MemoryStore, tenant: Tenant
) -> None:
    plain = store.search_similar_memories(QUERY, tenant.user_id, tenant.project_id)
    explained = store.search_similar_memories(
        QUERY, tenant.user_id, tenant.project_id, explain=True
    )
    assert all(r.explanation is None for r in plain)
    assert all("explanation" not in r.to_json() for r in plain)
    assert [(r.log_id, r.score) for r in plain] == [(r.log_id, r.score) for r in explained]
    assert json.dumps(explained[0].to_json())  # JSON-ready


def test_cli_search_explain(home_env: dict[str, str], store: MemoryStore, tenant: Tenant) -> None:
    cli = [sys.executable, "-m", "memory_pipeline.cli", "search"]
    args = ["--user", tenant.user_id, "--project", tenant.project_id, "--explain", QUERY]
    as_json = subprocess.run(
        [*cli, *args, "--json"], env=home_env, capture_output=True, text=True, timeout=300
    )
    assert as_json.returncode == 0, as_json.stderr
    results = json.loads(as_json.stdout)
    assert results and all(r["explanation"]["fusion"] for r in results)
    human = subprocess.run([*cli, *args], env=home_env, capture_output=True, text=True, timeout=300)
    assert human.returncode == 0, human.stderr
    assert "fused" in human.stdout and "vector #" in human.stdout
