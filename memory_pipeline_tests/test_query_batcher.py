"""The query batcher: concurrent searches share encode calls, and each gets its own vectors."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from memory_pipeline.embedding.query_batcher import QueryBatcher


class RecordingEmbedder:
    """Encodes each text as [its number, 1]; holds each call until released; records calls."""

    model_id = "fake-model"

    def __init__(self, batch_size: int = 32, fail: bool = False) -> None:
        self.batch_size = batch_size
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.fail = fail

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.entered.set()
        assert self.release.wait(30), "never released"
        if self.fail:
            raise RuntimeError("the model fell over")
        return np.array([[float(t.split("-")[1]), 1.0] for t in texts], dtype=np.float32)


def test_searches_that_arrive_while_the_model_is_busy_share_one_encode_call():
    fake = RecordingEmbedder()
    batcher = QueryBatcher(fake, max_wait_seconds=0)  # type: ignore[arg-type]
    with ThreadPoolExecutor(17) as pool:
        first = pool.submit(batcher.embed_queries, ["q-0"])
        assert fake.entered.wait(10)  # the model is busy with q-0 ...
        rest = [pool.submit(batcher.embed_queries, [f"q-{i}"]) for i in range(1, 17)]
        while len(batcher._queue) < 16:  # ... while 16 more queue up
            threading.Event().wait(0.01)
        fake.release.set()
        vectors = [first.result(10)] + [f.result(10) for f in rest]
    assert [v.tolist() for v in vectors] == [[[float(i), 1.0]] for i in range(17)]
    assert len(fake.calls) == 2 and sorted(fake.calls[1]) == sorted(f"q-{i}" for i in range(1, 17))
    assert (batcher.encode_calls, batcher.queries_encoded) == (2, 17)


def test_a_batch_holds_at_most_one_model_batch_of_queries():
    fake = RecordingEmbedder(batch_size=4)
    batcher = QueryBatcher(fake, max_wait_seconds=0)  # type: ignore[arg-type]
    with ThreadPoolExecutor(11) as pool:
        first = pool.submit(batcher.embed_queries, ["q-0"])
        assert fake.entered.wait(10)
        rest = [pool.submit(batcher.embed_queries, [f"q-{i}", f"q-{i}"]) for i in range(1, 11)]
        while len(batcher._queue) < 10:
            threading.Event().wait(0.01)
        fake.release.set()
        results = [f.result(10) for f in rest]
    assert first.result().tolist() == [[0.0, 1.0]]
    assert all(r.tolist() == [[float(i), 1.0]] * 2 for i, r in enumerate(results, 1))
    assert all(len(call) <= 4 for call in fake.calls)
    assert sum(len(call) for call in fake.calls) == 21


def test_an_encode_error_reaches_every_search_of_the_batch_and_none_hangs():
    fake = RecordingEmbedder(fail=True)
    batcher = QueryBatcher(fake, max_wait_seconds=0)  # type: ignore[arg-type]
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(batcher.embed_queries, ["q-0"])
        assert fake.entered.wait(10)
        rest = [pool.submit(batcher.embed_queries, [f"q-{i}"]) for i in range(1, 5)]
        while len(batcher._queue) < 4:
            threading.Event().wait(0.01)
        fake.release.set()
        for future in [first, *rest]:
            with pytest.raises(RuntimeError, match="fell over"):
                future.result(10)
    fake.fail = False
    assert batcher.embed_queries(["q-7"]).tolist() == [[7.0, 1.0]]  # and it recovers


def test_batched_vectors_are_the_models_own(embedder):
    batcher = QueryBatcher(embedder, max_wait_seconds=0.005)
    queries = [f"who fixed bug number {i} in the importer?" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        batched = list(pool.map(lambda q: batcher.embed_queries([q])[0], queries))
    alone = embedder.embed_queries(queries)
    cosines = [float(np.dot(a, b)) for a, b in zip(batched, alone, strict=True)]
    assert min(cosines) > 0.999
    assert batcher.model_id == embedder.model_id and batcher.dimension == embedder.dimension
