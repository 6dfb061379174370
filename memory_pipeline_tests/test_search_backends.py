"""Chroma and pgvector agree, and search falls back to pgvector when Chroma is unreachable."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from psycopg.types.json import Jsonb

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search import MemorySearch
from memory_pipeline.services.local_chroma import start_local_chroma, stop_local_chroma
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, connect_chroma, vector_id

TENANT_SIZE = 20_000
QUERIES = 50
TOP_K = 10
CANDIDATES = 50  # what search asks each backend for at limit 10


def _synthetic_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors with the low intrinsic dimension of real sentence embeddings."""
    latent = rng.standard_normal((n, 24))
    basis = np.random.default_rng(7).standard_normal((24, dim))
    vectors = latent @ basis + 0.3 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _load_embedded_tenant(store: MemoryStore, tenant: Tenant, vectors: np.ndarray) -> list[int]:
    """Write ``len(vectors)`` embedded memories straight to Postgres (COPY) and Chroma."""
    model = store.embedder.model_id
    with store.db.connection() as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY memory_log (user_id, project_id, tenant_key, raw_data, external_id) FROM STDIN"
            ) as copy,
        ):
            for i in range(len(vectors)):
                copy.write_row(
                    (
                        tenant.user_id,
                        tenant.project_id,
                        tenant.key,
                        Jsonb({"content": f"synthetic memory {i}"}),
                        f"s{i}",
                    )
                )
        rows = conn.execute(
            "SELECT id FROM memory_log WHERE tenant_key = %s ORDER BY id", (tenant.key,)
        ).fetchall()
        ids = [int(r["id"]) for r in rows]
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY memory_vector (log_id, embedding_model, chunk_index, tenant_key, chunk_text,"
                " embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int8", "text", "int4", "text", "text", "vector"])
            for log_id, vector in zip(ids, vectors, strict=True):
                copy.write_row((log_id, model, 0, tenant.key, f"synthetic memory {log_id}", vector))
        conn.execute(
            """UPDATE memory_log m
               SET status = 'embedded', search_text = 'synthetic memory ' || m.id,
                   memory_type = 'note', embedding_model = %s, chunk_count = 1,
                   embedding = v.embedding, embedded_at = now(), content_hash = 'synthetic'
               FROM memory_vector v
               WHERE v.log_id = m.id AND v.embedding_model = %s AND m.tenant_key = %s""",
            (model, model, tenant.key),
        )
    occurred = store.get_memory_log(ids[0])["occurred_at"].timestamp()
    metadatas = [
        {
            "log_id": i,
            "chunk_index": 0,
            "user_id": tenant.user_id,
            "project_id": tenant.project_id,
            "memory_type": "note",
            "occurred_at": occurred,
            "embedding_model": model,
        }
        for i in ids
    ]
    store.vector_store.upsert_vectors(
        tenant, model, [vector_id(i, 0) for i in ids], vectors, metadatas
    )
    return ids


def _top(scores: dict[int, float], k: int) -> list[int]:
    return [i for i, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def test_chroma_and_pgvector_agree_on_a_20k_memory_tenant(store: MemoryStore) -> None:
    tenant = Tenant(f"agree-{uuid.uuid4().hex[:8]}", "big")
    rng = np.random.default_rng(2024)
    dim = store.embedder.dimension
    vectors = _synthetic_vectors(TENANT_SIZE, dim, rng)
    ids = _load_embedded_tenant(store, tenant, vectors)
    queries = _synthetic_vectors(QUERIES, dim, rng)

    search = store.search
    with store.db.connection() as conn:
        chroma = search._vector_candidates(
            conn, tenant, store.embedder.model_id, queries, CANDIDATES, None, "chroma"
        )
        pgvector = search._vector_candidates(
            conn, tenant, store.embedder.model_id, queries, CANDIDATES, None, "pgvector"
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
        with caplog.at_level(logging.WARNING, logger="memory_pipeline.search.searcher"):
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
