"""Benchmark B (issue 4): search latency, query embedding included.

Setup (timed and printed, not part of the latency figures): ``unique_texts`` synthetic work logs
are extracted and embedded for real; a tenant of ``rows`` memories reuses them, each vector the
real one plus a little Gaussian noise (renormalised), and ``tenants`` small tenants get
``tenant_rows`` memories each. Everything is loaded by COPY into memory_log / memory_vector
(status ``embedded``) and by Chroma upserts of ≤ 5,000, then the pgvector HNSW index is built
once over the loaded vectors, the keyword index is maintained as a pipeline run would (term
statistics folded in, champion lists built from scratch), and the Chroma server is restarted so every
collection starts cold.

Measured through ``MemoryStore.search_similar_memories`` with a distinct query text per call:
the big tenant in vector mode (Chroma and pgvector backends) and in the default mode; the small
tenants' first (cold) query each, then warm queries in the same modes.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from memory_pipeline import MemoryStore
from memory_pipeline.embedding import Embedder
from memory_pipeline.extraction import extract_memory
from memory_pipeline.keyword_index import refresh_keyword_index
from memory_pipeline.local_services import ensure_services
from memory_pipeline.local_services.local_chroma import stop_local_chroma
from memory_pipeline.search import DEFAULT_MODE
from memory_pipeline.search import searcher as searcher_module
from memory_pipeline.search.searcher import MemorySearch
from memory_pipeline.seeding import ReadyMemory, load_embedded_memories
from memory_pipeline.storage import search_reads
from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.homes import fresh_section_home, section_settings, stop_section_services
from memory_pipeline_bench.results import SectionResult, latency_summary, progress
from memory_pipeline_bench.stage_timer import StageTimer
from memory_pipeline_bench.synthetic import search_query, work_logs

TARGET_VECTOR_P50_MS = 10.0
TARGET_VECTOR_P95_MS = 25.0
TARGET_DEFAULT_P50_MS = 25.0
#: Standard deviation of the per-dimension noise added to reused vectors: with 384 dimensions
#: a copy keeps a cosine similarity of about 0.9 to its original.
NOISE_SIGMA = 0.025
#: Memory for building the HNSW index in one pass over the loaded vectors.
INDEX_BUILD_PGOPTIONS = "-c maintenance_work_mem=1GB"


@contextmanager
def _pgoptions(value: str):  # type: ignore[no-untyped-def]
    previous = os.environ.get("PGOPTIONS")
    os.environ["PGOPTIONS"] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PGOPTIONS", None)
        else:
            os.environ["PGOPTIONS"] = previous


class _Corpus:
    """The real texts and vectors that synthetic memories reuse."""

    def __init__(self, store: MemoryStore, count: int, seed: int) -> None:
        self.docs = list(work_logs(count, seed + 1))
        self.extracted = [extract_memory(d) for d in self.docs]
        # one vector per memory: the first chunk, as memory_log.embedding holds it
        first_chunks = [store.embedder.chunk_text(x.text)[0] for x in self.extracted]
        self.vectors = store.embedder.embed_batch(first_chunks)
        self.texts = first_chunks
        self.model_id = store.embedder.model_id
        # the configured second stage's vectors of the same texts (MEMORY_PIPELINE_RERANK_MODEL)
        stage = store.search.second_stage
        self.second_model = stage.model_id if stage else None
        self.second_vectors = stage.embedder.embed_batch(first_chunks) if stage else None

    def memories(
        self, start: int, count: int, rng: np.random.Generator
    ) -> tuple[list[ReadyMemory], np.ndarray, tuple[str, np.ndarray] | None]:
        """Memories ``start..start+count``, their noisy vectors and their second stage's."""
        picks = [(start + i) % len(self.docs) for i in range(count)]
        noisy = _noisy(self.vectors[picks], rng)
        second = None
        if self.second_model is not None and self.second_vectors is not None:
            second = (self.second_model, _noisy(self.second_vectors[picks], rng))
        memories = [
            ReadyMemory.of(
                f"m-{start + i}", self.docs[p], self.extracted[p], self.model_id, self.texts[p]
            )
            for i, p in enumerate(picks)
        ]
        return memories, noisy, second


def _noisy(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``vectors`` moved by Gaussian noise and normalised again (distinct but realistic)."""
    noisy = vectors + rng.normal(0.0, NOISE_SIGMA, vectors.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return noisy.astype(np.float32)


def _timed_searches(
    store: MemoryStore,
    tenants: list[Tenant],
    queries: list[str],
    **options: Any,
) -> list[float]:
    seconds = []
    for tenant, query in zip(tenants, queries, strict=True):
        start = time.perf_counter()
        store.search_similar_memories(query, tenant.user_id, tenant.project_id, **options)
        seconds.append(time.perf_counter() - start)
    return seconds


def _add_latency(
    result: SectionResult,
    label: str,
    seconds: list[float],
    *,
    p50_target: float | None = None,
    p95_target: float | None = None,
) -> None:
    summary = latency_summary(seconds)
    result.details[label] = summary
    result.add(f"{label} p50", summary["p50_ms"], "ms", at_most=p50_target)
    result.add(f"{label} p95", summary["p95_ms"], "ms", at_most=p95_target)


#: The stages of a default-mode search the breakdown times: (owner, attribute, stage). Each is
#: looked up at call time by the searcher, so wrapping the attribute times every call of it.
SEARCH_STAGES: tuple[tuple[Any, str, str], ...] = (
    (MemorySearch, "_known_tenant", "tenant check (SQL)"),
    (Embedder, "embed_queries", "query embedding"),
    (searcher_module, "vector_candidates", "vector candidates (Chroma)"),
    (searcher_module, "keyword_candidates", "keyword candidates (SQL)"),
    (search_reads, "candidate_facts", "candidate facts (SQL)"),
    (search_reads, "adjacent_memories", "conversation neighbours and sitting (SQL)"),
    (search_reads, "best_chunks", "exact similarities (SQL)"),
    (search_reads, "memory_rows", "load rows (SQL)"),
)


def _stage_breakdown(
    store: MemoryStore, result: SectionResult, tenant: Tenant, label: str, queries: list[str]
) -> None:
    """Mean milliseconds per stage of a default-mode search (timers around its steps)."""
    timer = StageTimer()
    stages = SEARCH_STAGES
    with ExitStack() as stack:
        for owner, attribute, stage in stages:
            stack.enter_context(timer.patched(owner, attribute, stage))
        total = _timed_searches(store, [tenant] * len(queries), queries)
    result.add(
        f"{label} default mode: whole search (breakdown run)",
        1000 * sum(total) / len(total),
        "ms mean",
    )
    for _, _, stage in stages:
        result.add(f"  {stage}", 1000 * timer.seconds[stage] / len(queries), "ms mean")
    result.details["default_mode_breakdown_ms"] = {
        stage: 1000 * timer.seconds[stage] / len(queries) for _, _, stage in stages
    }


def run(
    base: Path,
    *,
    rows: int,
    unique_texts: int,
    tenants: int,
    tenant_rows: int,
    queries: int,
    seed: int,
) -> SectionResult:
    """Run benchmark B in ``base/search`` and return its figures."""
    result = SectionResult("search")
    home = fresh_section_home(base, "search")
    settings = section_settings(home)
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    progress(f"search: home {home}; {rows} memories in one tenant, {tenants} x {tenant_rows}")
    try:
        setup_start = time.perf_counter()
        with MemoryStore(settings, ensure_services(settings)) as store:
            model_id = store.embedder.model_id
            corpus = _Corpus(store, min(unique_texts, max(rows, tenant_rows)), seed)
            embed_seconds = time.perf_counter() - setup_start
            progress(f"search: embedded {len(corpus.docs)} real texts in {embed_seconds:.0f} s")

            big = Tenant("bench-user", f"bench-search-{rows}")
            load_start = time.perf_counter()
            for start in range(0, rows, 20_000):
                memories, vectors, second = corpus.memories(start, min(20_000, rows - start), rng)
                load_embedded_memories(
                    store.db,
                    store.vector_store,
                    model_id,
                    big,
                    memories,
                    vectors,
                    second_stage=second,
                )
                progress(f"search: big tenant {start + len(memories)}/{rows} loaded")
            big_seconds = time.perf_counter() - load_start

            small = [Tenant(f"bench-user-{i:04d}", "bench-search-small") for i in range(tenants)]
            load_start = time.perf_counter()
            for index, tenant in enumerate(small):
                memories, vectors, second = corpus.memories(index * tenant_rows, tenant_rows, rng)
                load_embedded_memories(
                    store.db,
                    store.vector_store,
                    model_id,
                    tenant,
                    memories,
                    vectors,
                    second_stage=second,
                )
                if (index + 1) % 100 == 0:
                    progress(f"search: small tenants {index + 1}/{tenants} loaded")
            small_seconds = time.perf_counter() - load_start

            index_start = time.perf_counter()
            with _pgoptions(INDEX_BUILD_PGOPTIONS):
                store.ensure_model_index()
            with store.db.connection() as conn:
                conn.execute("ANALYZE memory_log")
                conn.execute("ANALYZE memory_vector")
            index_seconds = time.perf_counter() - index_start
            progress(f"search: pgvector HNSW index built in {index_seconds:.0f} s")
            keyword_start = time.perf_counter()
            with store.db.connection() as conn:
                refresh_keyword_index(conn, {t.key: [] for t in (big, *small)})
            keyword_seconds = time.perf_counter() - keyword_start
            progress(
                f"search: keyword index (statistics, champion lists) in {keyword_seconds:.0f} s"
            )
            embedder = store.embedder

        # A restarted Chroma server holds no collection in memory: every first query is cold.
        stop_local_chroma(settings.chroma_data_dir)
        restart_start = time.perf_counter()
        with MemoryStore(settings, ensure_services(settings), embedder=embedder) as store:
            restart_seconds = time.perf_counter() - restart_start
            setup_seconds = time.perf_counter() - setup_start
            result.details["setup_seconds"] = {
                "embed_real_texts": embed_seconds,
                "load_big_tenant": big_seconds,
                "load_small_tenants": small_seconds,
                "pgvector_index": index_seconds,
                "keyword_index": keyword_seconds,
                "chroma_restart": restart_seconds,
                "total": setup_seconds,
            }
            result.add("setup (embed, COPY, Chroma upserts, index)", setup_seconds, "s")
            _measure(store, result, big, small, queries, pick, rows)
    finally:
        stop_section_services(home)
    return result


def _measure(
    store: MemoryStore,
    result: SectionResult,
    big: Tenant,
    small: list[Tenant],
    queries: int,
    pick: random.Random,
    rows: int,
) -> None:
    counter = iter(range(10**9))

    def next_queries(n: int) -> list[str]:
        return [search_query(next(counter)) for _ in range(n)]

    # query embedding alone, for reference
    embed_seconds = []
    for query in next_queries(queries):
        start = time.perf_counter()
        store.embedder.embed_queries([query])
        embed_seconds.append(time.perf_counter() - start)
    _add_latency(result, "query embedding alone", embed_seconds)
    # the same with one torch thread: two threads on a busy 2-core machine wait on each other
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = []
        for query in next_queries(queries):
            start = time.perf_counter()
            store.embedder.embed_queries([query])
            one_thread.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    _add_latency(result, "query embedding alone, 1 torch thread (reference)", one_thread)

    big_label = f"{rows // 1000}k tenant" if rows >= 1000 else f"{rows}-row tenant"
    for backend in ("chroma", "pgvector"):
        cold = _timed_searches(store, [big], next_queries(1), mode="vector", backend=backend)
        result.add(f"{big_label} vector/{backend} first query (cold)", cold[0] * 1000, "ms")
    modes: list[tuple[str, dict[str, Any], float | None, float | None]] = [
        (
            "vector/chroma",
            {"mode": "vector", "backend": "chroma"},
            TARGET_VECTOR_P50_MS,
            TARGET_VECTOR_P95_MS,
        ),
        (
            "vector/pgvector",
            {"mode": "vector", "backend": "pgvector"},
            TARGET_VECTOR_P50_MS,
            TARGET_VECTOR_P95_MS,
        ),
        (f"default ({DEFAULT_MODE}/chroma)", {}, TARGET_DEFAULT_P50_MS, None),
    ]
    for label, options, p50, p95 in modes:
        _timed_searches(store, [big] * 5, next_queries(5), **options)  # warm-up
        seconds = _timed_searches(store, [big] * queries, next_queries(queries), **options)
        _add_latency(result, f"{big_label} {label} warm", seconds, p50_target=p50, p95_target=p95)
        progress(f"search: {big_label} {label}: {latency_summary(seconds)}")

    _stage_breakdown(store, result, big, big_label, next_queries(min(queries, 50)))
    if not small:
        return
    n = len(small)
    order = pick.sample(small, n)
    cold = _timed_searches(store, order, next_queries(n), mode="vector", backend="chroma")
    _add_latency(result, f"{n} tenants vector/chroma cold (first query per collection)", cold)
    for label, options, p50, p95 in modes:
        chosen = [pick.choice(small) for _ in range(queries)]
        seconds = _timed_searches(store, chosen, next_queries(queries), **options)
        _add_latency(result, f"{n} tenants {label} warm", seconds, p50_target=p50, p95_target=p95)
        progress(f"search: {n} tenants {label}: {latency_summary(seconds)}")
