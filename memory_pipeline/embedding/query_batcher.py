"""Micro-batching of search queries: concurrent searches share one encode call of the model.

A service answers many searches at once, each in its own thread, and each would run the model
on its own query: the model then serialises them, one small forward pass after another, and
throughput stops growing with concurrency. :class:`QueryBatcher` stands in for the embedder
where searches embed their queries (:meth:`embed_queries`): the first thread to arrive while
the model is idle encodes at once (no added latency for a lone search); threads arriving while
it encodes queue up, and the next of them to run takes everything queued, up to one model
batch, into one encode call. When the previous batch held more than one search (the service
is busy), the leader also waits up to ``max_wait_seconds`` for more, so that a burst fills one
batch rather than two. Every other attribute is the wrapped embedder's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memory_pipeline.embedding.embedder import Embedder

#: How long a leader waits for more queries when the service is busy (bounded; 2 ms ≈ a
#: third of one short query's encode here).
DEFAULT_MAX_WAIT_SECONDS = 0.002


@dataclass(eq=False)
class _Request:
    texts: list[str]
    vectors: np.ndarray | None = None
    error: Exception | None = None
    done: bool = False


class QueryBatcher:
    """An embedder whose :meth:`embed_queries` batches the queries of concurrent callers."""

    def __init__(
        self, embedder: Embedder, *, max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS
    ) -> None:
        self.embedder = embedder
        self.max_batch = embedder.batch_size  # one model batch per encode call
        self.max_wait_seconds = max_wait_seconds
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Request] = deque()
        self._busy = False
        self._last_batch_searches = 0
        #: Encode calls made and queries they carried (for the bench and tests).
        self.encode_calls = 0
        self.queries_encoded = 0
        #: Called with (queries, seconds) after each batched encode call (the service's metrics).
        self.on_encode: Callable[[int, float], None] | None = None

    def __getattr__(self, name: str) -> Any:  # everything but embed_queries is the embedder's
        return getattr(self.embedder, name)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length vectors for ``texts``, as :meth:`Embedder.embed_queries` returns them."""
        texts = list(texts)
        if not texts or len(texts) >= self.max_batch:
            return self.embedder.embed_queries(texts)
        request = _Request(texts)
        with self._changed:
            self._queue.append(request)
        while True:
            with self._changed:
                while not request.done and self._busy:
                    self._changed.wait()
                if request.done:
                    return self._result(request)
                self._busy = True  # this thread leads the next batch
                if self._last_batch_searches > 1 and self.max_wait_seconds > 0:
                    deadline = time.monotonic() + self.max_wait_seconds
                    while self._queued_texts() < self.max_batch:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._changed.wait(left)
                batch = self._take_batch()
            try:
                self._encode(batch)
            finally:
                with self._changed:
                    self._busy = False
                    self._last_batch_searches = len(batch)
                    self._changed.notify_all()
            # else the queue held a full batch before this request: lead again or wait

    def _queued_texts(self) -> int:
        return sum(len(r.texts) for r in self._queue)

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        size = 0
        while self._queue and size + len(self._queue[0].texts) <= self.max_batch:
            request = self._queue.popleft()
            batch.append(request)
            size += len(request.texts)
        return batch

    def _encode(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        began = time.perf_counter()
        try:
            vectors = self.embedder.embed_queries(texts)
        except Exception as exc:  # every search of the batch gets the error, none hangs
            for r in batch:
                r.error, r.done = exc, True
            return
        if self.on_encode is not None:  # before the searches go on: a scrape after them sees it
            self.on_encode(len(texts), time.perf_counter() - began)
        start = 0
        for r in batch:
            r.vectors = vectors[start : start + len(r.texts)]
            r.done = True
            start += len(r.texts)
        self.encode_calls += 1
        self.queries_encoded += len(texts)

    @staticmethod
    def _result(request: _Request) -> np.ndarray:
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors
