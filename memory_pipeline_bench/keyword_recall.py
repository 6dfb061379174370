"""Benchmark D: keyword search on a large tenant, against exact BM25.

A tenant of ``rows`` distinct synthetic work logs is loaded as embedded (COPY; its vectors are
random unit vectors, which keyword search never reads, and no pgvector index is built), its
keyword index is built as the pipeline builds it, and for ``queries`` questions whose plans
read champion lists, in one run:

- the top 10 of scoring every memory that holds a query term (exact BM25; slow at this size,
  which is why searches plan);
- the top 10 of the plan searches use now, and of plans that read only the first
  :data:`~memory_pipeline.keyword_index.plan.MIN_CHAMPION_DEPTH` memories of each list (what
  64-long lists gave before the lists grew);

with recall@10 against exact and the latency of each plan's scoring. Bench B's big tenant
cannot show this: it reuses 2,000 texts, so each champion list holds copies of a few memories.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import psycopg

from memory_pipeline import MemoryStore
from memory_pipeline.extraction import extract_memory
from memory_pipeline.keyword_index import refresh_keyword_index
from memory_pipeline.keyword_index.bm25 import TermStatistics
from memory_pipeline.keyword_index.plan import CandidatePlan, plan_candidates
from memory_pipeline.keyword_index.storage import query_terms, score_candidates, term_statistics
from memory_pipeline.local_services import ensure_services
from memory_pipeline.seeding import ReadyMemory, load_embedded_memories
from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.homes import fresh_section_home, section_settings, stop_section_services
from memory_pipeline_bench.results import SectionResult, latency_summary, progress
from memory_pipeline_bench.synthetic import search_query, work_logs

LOAD_BATCH = 20_000


def _load(store: MemoryStore, tenant: Tenant, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model_id = store.embedder.model_id
    for start in range(0, rows, LOAD_BATCH):
        memories = [
            ReadyMemory.of(f"k-{start + offset}", doc, extract_memory(doc), model_id)
            for offset, doc in enumerate(work_logs(min(LOAD_BATCH, rows - start), seed, start))
        ]
        vectors = rng.normal(size=(len(memories), store.embedder.dimension))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        load_embedded_memories(
            store.db, store.vector_store, model_id, tenant, memories, vectors.astype(np.float32)
        )
        progress(f"keyword: {start + len(memories)}/{rows} memories loaded")


def _top10(
    conn: psycopg.Connection,
    tenant: Tenant,
    terms: list[str],
    stats: TermStatistics,
    plan: CandidatePlan,
) -> tuple[set[int], float]:
    start = time.perf_counter()
    scores = score_candidates(conn, tenant.key, terms, plan, stats, None, 10)
    return set(scores), time.perf_counter() - start


def run(base: Path, *, rows: int, queries: int, seed: int) -> SectionResult:
    """Run benchmark D in ``base/keyword`` and return its figures."""
    result = SectionResult("keyword")
    home = fresh_section_home(base, "keyword")
    settings = section_settings(home)
    tenant = Tenant("bench-user", f"bench-keyword-{rows}")
    try:
        with MemoryStore(settings, ensure_services(settings)) as store:
            setup = time.perf_counter()
            _load(store, tenant, rows, seed + 2)
            with store.db.connection() as conn:
                conn.execute("ANALYZE memory_log")
                refresh_keyword_index(conn, {tenant.key: []})
            result.add("setup (COPY, keyword index)", time.perf_counter() - setup, "s")

            recalls: dict[str, list[float]] = {"now": [], "depth 64": []}
            seconds: dict[str, list[float]] = {"exact": [], "now": [], "depth 64": []}
            with store.db.autocommit_connection() as conn:
                for index in range(queries * 10):
                    if len(recalls["now"]) == queries:
                        break
                    terms = query_terms(conn, search_query(index, seed + 2))
                    stats = term_statistics(conn, tenant.key, terms)
                    plan = plan_candidates(stats.doc_freq)
                    if plan.exact:
                        continue
                    shallow = plan_candidates(stats.doc_freq, champion_budget=0)
                    every = plan_candidates(stats.doc_freq, exact_budget=sys.maxsize)
                    exact, took = _top10(conn, tenant, terms, stats, every)
                    seconds["exact"].append(took)
                    for label, chosen in (("now", plan), ("depth 64", shallow)):
                        found, took = _top10(conn, tenant, terms, stats, chosen)
                        seconds[label].append(took)
                        recalls[label].append(len(found & exact) / max(len(exact), 1))
            n = len(recalls["now"])
            progress(f"keyword: {n} queries planned on champion lists")
            for label in ("now", "depth 64"):
                result.add(
                    f"{rows // 1000}k distinct memories, keyword recall@10 vs exact BM25, "
                    f"{label} ({n} queries)",
                    sum(recalls[label]) / max(n, 1),
                    "ratio",
                )
            for label in ("exact", "now", "depth 64"):
                summary = latency_summary(seconds[label])
                result.details[f"scoring {label}"] = summary
                result.add(f"  scoring p50, {label}", summary["p50_ms"], "ms")
    finally:
        stop_section_services(home)
    return result
