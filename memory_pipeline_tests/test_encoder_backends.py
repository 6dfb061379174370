"""Encoder backends: each within its documented cosine of torch float32, exported once per
home, and a backend change rolled out like a model change (no tenant mixes two backends)."""

import threading
from pathlib import Path

import numpy as np
import pytest

from memory_pipeline.embedding import Embedder, backends
from memory_pipeline.embedding.backends import (
    MIN_COSINE,
    ensure_export,
    model_id_for,
    split_model_id,
)
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.settings import DEFAULT_EMBEDDING_MODEL, EMBEDDING_BACKENDS, Settings
from memory_pipeline.storage.live_models import live_model_of

TEXTS = (
    "what broke the nightly import",
    "who fixed the flaky deploy last week?",
    "Caroline: I went to the LGBTQ support group yesterday and it was so powerful.",
    "Summary: chroma upserts above 5461 vectors are refused. Solution: split the batch. "
    "Lesson: read get_max_batch_size() once per client.",
    "When did Melanie paint the sunrise over the lake?",
    "Task: retry failed rows with exponential backoff. Files touched: processing/batch.py, "
    "storage/memory_logs.py. Gotcha: a closed cursor inside the retry loop.",
    "notes on pgvector hnsw iterative scans",
    "x",
)
EXPORTED = [b for b in EMBEDDING_BACKENDS if b != "torch"]


@pytest.fixture(scope="module")
def fp32(embedder) -> Embedder:
    return Embedder(embedder.model_name, model_source=embedder.model_source, precision="float32")


@pytest.fixture(scope="module")
def exports(test_home: Path) -> Path:
    return test_home / "models"


def _backend(fp32: Embedder, backend: str, exports: Path) -> Embedder:
    embedder = Embedder(
        fp32.model_name, model_source=fp32.model_source, backend=backend, exports_dir=exports
    )
    embedder._model = fp32.model  # the float32 model tokenizes and is what gets exported
    return embedder


def test_a_backend_is_part_of_the_model_id_and_torch_keeps_the_plain_name():
    assert model_id_for("m/x", "torch") == "m/x"
    for backend in EXPORTED:
        model_id = model_id_for("m/x", backend)
        assert model_id != "m/x"
        assert split_model_id(model_id) == ("m/x", backend, False)
    assert split_model_id("m/x") == ("m/x", "torch", False)
    assert split_model_id("team@home/model") == ("team@home/model", "torch", False)
    with pytest.raises(ValueError, match="unknown embedding backend"):
        model_id_for("m/x", "tensorrt")


def test_the_backend_setting_is_read_and_checked(monkeypatch):
    monkeypatch.delenv("MEMORY_PIPELINE_EMBEDDING_BACKEND", raising=False)
    assert Settings.from_env().embedding_backend == "torch"
    monkeypatch.setenv("MEMORY_PIPELINE_EMBEDDING_BACKEND", "onnx-int8")
    assert Settings.from_env().embedding_backend == "onnx-int8"
    monkeypatch.setenv("MEMORY_PIPELINE_EMBEDDING_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="MEMORY_PIPELINE_EMBEDDING_BACKEND"):
        Settings.from_env()


@pytest.mark.parametrize("backend", EXPORTED)
def test_each_backend_stays_within_its_documented_cosine_of_torch_float32(fp32, exports, backend):
    reference = fp32.embed_batch(list(TEXTS))
    embedder = _backend(fp32, backend, exports)
    vectors = embedder.embed_batch(list(TEXTS))
    assert vectors.shape == reference.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float((vectors * reference).sum(axis=1).min()) >= MIN_COSINE[backend]
    # queries go through the same exported model (int8 scales activations per batch)
    queries = embedder.embed_queries(list(TEXTS[:2]))
    assert float((queries * reference[:2]).sum(axis=1).min()) >= MIN_COSINE[backend]


def test_an_export_is_made_once_per_home_even_when_two_processes_ask_at_once(tmp_path, monkeypatch):
    made = []
    started = threading.Barrier(2)

    def slow_export(model, backend, out):
        made.append(out)
        started.wait(timeout=10)  # both exports are under way at once
        (out / "model.onnx").write_bytes(b"graph of " + str(out).encode())

    monkeypatch.setattr(backends, "_export", slow_export)
    paths: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: paths.append(ensure_export(tmp_path, "/models/m", "onnx", object))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(paths) == 2 and paths[0] == paths[1] and paths[0].exists()
    assert paths[0].read_bytes().startswith(b"graph of ")
    assert [p.name for p in paths[0].parent.parent.iterdir()] == ["onnx"]  # no temporaries

    def never(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(backends, "_export", never)
    assert ensure_export(tmp_path, "/models/m", "onnx", object) == paths[0]


def _models_in_postgres(store, tenant):
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT embedding_model, count(*) AS n FROM memory_vector WHERE tenant_key = %s "
            "GROUP BY 1",
            (tenant.key,),
        ).fetchall()
    return {r["embedding_model"]: r["n"] for r in rows}


def test_a_backend_change_rolls_out_like_a_model_change(store, new_tenant, fp32, exports):
    tenant = new_tenant("backend")
    for i in range(5):
        store.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": f"note {i} about sailing to Crete"}
        )
    store.process_pending(tenant.user_id, tenant.project_id)
    torch_id = store.embedder.model_id
    assert torch_id == DEFAULT_EMBEDDING_MODEL
    assert _models_in_postgres(store, tenant) == {torch_id: 5}

    onnx = _backend(fp32, "onnx", exports)
    onnx_store = MemoryStore(store.settings, store.endpoints, embedder=onnx, migrate=False)
    onnx_store.ensure_model_index()
    # configured but not yet processed: searches still run on torch's complete vectors
    hits = onnx_store.search_similar_memories("sailing", tenant.user_id, tenant.project_id)
    assert len(hits) == 5
    counts = onnx_store.process_pending(tenant.user_id, tenant.project_id)
    assert counts.get("reembedded", 0) == 5 or _models_in_postgres(store, tenant) == {
        onnx.model_id: 5
    }
    assert _models_in_postgres(store, tenant) == {onnx.model_id: 5}
    with store.db.connection() as conn:
        assert live_model_of(conn, tenant.key) == onnx.model_id
    hits = onnx_store.search_similar_memories("sailing", tenant.user_id, tenant.project_id)
    assert len(hits) == 5 and all(h.similarity > 0.2 for h in hits)
