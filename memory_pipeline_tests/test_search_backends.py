"""Chroma and pgvector agree, search falls back to pgvector when Chroma is unreachable, and the
``auto`` backend searches small tenants exactly in Postgres, larger ones in Chroma."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from memory_pipeline.local_services.local_chroma import start_local_chroma, stop_local_chroma
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search import MemorySearch, SearchRequest
from memory_pipeline.search.vector import vector_candidates
from memory_pipeline.seeding import ReadyMemory, load_embedded_memories
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, connect_chroma

TENANT_SIZE = 20_000
QUERIES = 50
TOP_K = 10
CANDIDATES = 50  # what search asks each backend for at limit 10
OCCURRED_AT = datetime(2024, 6, 1, tzinfo=UTC)


def _synthetic_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors with the low intrinsic dimension of real sentence embeddings."""
    latent = rng.standard_normal((n, 24))
    basis = np.random.default_rng(7).standard_normal((24, dim))
    vectors = latent @ basis + 0.3 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _load_embedded_tenant(store: MemoryStore, tenant: Tenant, vectors: np.ndarray) -> list[int]:
    """``len(vectors)`` embedded notes, seeded straight into Postgres and Chroma."""
    model = store.embedder.model_id
    memories = [
        ReadyMemory(
            external_id=f"s{i}",
            raw_data={"content": f"synthetic memory {i}"},
            search_text=f"synthetic memory {i}",
            memory_type="note",
            occurred_at=OCCURRED_AT,
            content_hash="synthetic",
        )
        for i in range(len(vectors))
    ]
    return load_embedded_memories(store.db, store.vector_store, model, tenant, memories, vectors)


def _top(scores: dict[int, float], k: int) -> list[int]:
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def test_chroma_and_pgvector_agree_on_a_20k_memory_tenant(store: MemoryStore) -> None:
    tenant = Tenant(f"agree-{uuid.uuid4().hex[:8]}", "big")
    rng = np.random.default_rng(2024)
    dim = store.embedder.dimension
    vectors = _synthetic_vectors(TENANT_SIZE, dim, rng)
    ids = _load_embedded_tenant(store, tenant, vectors)
    queries = _synthetic_vectors(QUERIES, dim, rng)

    model = store.embedder.model_id
    with store.db.connection() as conn:
        chroma, pgvector = (
            vector_candidates(
                conn,
                store.search.store,
                SearchRequest.of(["q"], tenant.user_id, tenant.project_id, backend=backend),
                model,
                queries,
                CANDIDATES,
            )
            for backend in ("chroma", "pgvector")
        )
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :TOP_K]

    overlaps, recall_chroma, recall_pg = [], [], []
    for q in range(QUERIES):
        top_c, top_p = _top(chroma[q], TOP_K), _top(pgvector[q], TOP_K)
        truth = {ids[j] for j in exact[q]}
        overlaps.append(len(set(top_c) & set(top_p)) / TOP_K)
        recall_chroma.append(len(set(top_c) & truth) / TOP_K)
        recall_pg.append(len(set(top_p) & truth) / TOP_K)
    assert np.mean(overlaps) >= 0.95, (
        np.mean(overlaps),
        np.mean(recall_chroma),
        np.mean(recall_pg),
    )
    assert np.mean(recall_pg) >= 0.95
    assert np.mean(recall_chroma) >= 0.95
    # and the public search returns the same top-10 memories through either backend
    same = 0
    for q in range(5):
        text = f"synthetic memory {ids[int(exact[q][0])]}"
        by_c = store.search_similar_memories(
            text,
            tenant.user_id,
            tenant.project_id,
            mode="vector",
            backend="chroma",
            min_similarity=-1,
        )
        by_p = store.search_similar_memories(
            text,
            tenant.user_id,
            tenant.project_id,
            mode="vector",
            backend="pgvector",
            min_similarity=-1,
        )
        same += len({r.log_id for r in by_c} & {r.log_id for r in by_p})
    assert same / (5 * TOP_K) >= 0.9


@pytest.fixture
def stopped_chroma(tmp_path_factory: pytest.TempPathFactory) -> ChromaVectorStore:
    """A vector store whose (separate, private) Chroma server has been stopped."""
    data_dir = Path(tmp_path_factory.mktemp("dead-chroma"))
    info = start_local_chroma(data_dir)
    try:
        vector_store = ChromaVectorStore(connect_chroma(info.host, info.port))
    finally:
        stop_local_chroma(data_dir)
    return vector_store


def test_search_falls_back_to_pgvector_when_chroma_is_stopped(
    store: MemoryStore,
    new_tenant: Callable[..., Tenant],
    stopped_chroma: ChromaVectorStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = new_tenant("fallback")
    wanted = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "The cache invalidation bug came from DST."}
    )
    store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "Lunch is at noon on Fridays."}
    )
    store.process_pending(tenant.user_id, tenant.project_id)
    expected = store.search_similar_memories(
        "cache invalidation bug", tenant.user_id, tenant.project_id, backend="pgvector"
    )
    dead = MemorySearch(store.db, stopped_chroma, store.embedder)
    for mode in ("vector", "hybrid"):
        with caplog.at_level(logging.WARNING, logger="memory_pipeline.search.vector"):
            caplog.clear()
            results = dead.search_similar_memories(
                "cache invalidation bug",
                tenant.user_id,
                tenant.project_id,
                mode=mode,
                backend="chroma",
            )
        assert results and results[0].log_id == wanted
        assert "falling back to pgvector" in caplog.text
    assert [r.log_id for r in results] == [r.log_id for r in expected]


def test_search_without_any_chroma_server_uses_pgvector(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant("nochroma")
    wanted = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "Kubernetes pods restart on OOM."}
    )
    store.process_pending(tenant.user_id, tenant.project_id)
    search = MemorySearch(store.db, None, store.embedder)
    results = search.search_similar_memories(
        "pods out of memory", tenant.user_id, tenant.project_id
    )
    assert [r.log_id for r in results] == [wanted]


def test_auto_searches_a_small_tenant_in_postgres_and_a_larger_one_in_chroma(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant("auto")
    texts = [
        "The cache invalidation bug came from DST.",
        "Lunch is at noon on Fridays.",
        "The deploy key lives in the team vault.",
    ]
    ids = [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": t}) for t in texts
    ]
    store.process_pending(tenant.user_id, tenant.project_id)
    query = "cache invalidation bug"
    through_chroma = store.search_similar_memories(
        query, tenant.user_id, tenant.project_id, backend="chroma"
    )
    assert [r.log_id for r in through_chroma][:1] == [ids[0]]
    auto = store.search_similar_memories(query, tenant.user_id, tenant.project_id)
    assert [(r.log_id, round(r.similarity, 5)) for r in auto] == [
        (r.log_id, round(r.similarity, 5)) for r in through_chroma
    ]
    for backend in ("auto", "chroma"):  # a filter applies in the exact scan as in Chroma
        filtered = store.search_similar_memories(
            query,
            tenant.user_id,
            tenant.project_id,
            where_filter={"log_id": {"$in": ids[1:]}},
            min_similarity=-1.0,
            mode="vector",
            backend=backend,
        )
        assert {r.log_id for r in filtered} == set(ids[1:]), backend

    # Chroma loses the tenant's vectors: auto still finds every memory (it never asked Chroma),
    # until the tenant counts as larger than the exact scan's limit
    store.vector_store.delete_memories(tenant, ids)
    assert (
        store.search_similar_memories(
            query, tenant.user_id, tenant.project_id, mode="vector", backend="chroma"
        )
        == []
    )
    exact = store.search_similar_memories(
        query, tenant.user_id, tenant.project_id, min_similarity=-1.0, mode="vector"
    )
    assert {r.log_id for r in exact} == set(ids) and exact[0].log_id == ids[0]
    for limit, found in ((len(ids), set(ids)), (len(ids) - 1, set())):
        search = MemorySearch(store.db, store.vector_store, store.embedder, exact_max_vectors=limit)
        results = search.search_similar_memories(
            query, tenant.user_id, tenant.project_id, min_similarity=-1.0, mode="vector"
        )
        assert {r.log_id for r in results} == found, limit
