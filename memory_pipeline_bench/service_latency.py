"""Benchmark E (issue 16): the memory service — search through HTTP beside in-process, search
throughput as clients grow, and batch adds.

Setup (not timed): ``rows`` synthetic work logs stored and embedded in one tenant through
``MemoryStore``; a tenant key; ``memory-pipeline serve`` started in the section's home.

Measured, all in one run:

- search latency, default mode, one query at a time: in-process ``search_similar_memories``
  and ``POST /v1/search`` through one keep-alive HTTP client, interleaved in ``rounds`` so that
  machine load hits both alike; the target compares their p50s;
- searches/s with 1, 8 and 32 concurrent HTTP clients, each sending distinct queries for
  ``seconds``, and the latency each client saw; the target is the ratio at 32 ÷ at 1;
- the same 1 and 32 clients against a second ``serve`` started with ``--no-query-batching``,
  so the batcher's share of that ratio is measured, not assumed;
- ``batch_rows`` memories sent as batches of 1,000 (``POST /v1/memories/batch``, bodies
  serialised before the clock starts): memories accepted per second. Embedding them is the
  pipeline's work, not the service's, and is not part of this figure.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from memory_pipeline import MemoryStore
from memory_pipeline.service.keys import create_key
from memory_pipeline.service.launcher import running_service, wait_until_ready
from memory_pipeline.services import ensure_services
from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.homes import fresh_section_home, section_settings, stop_section_services
from memory_pipeline_bench.results import SectionResult, latency_summary, progress
from memory_pipeline_bench.synthetic import search_query, work_logs

TARGET_HTTP_OVERHEAD_MS = 3.0
TARGET_SCALING = 2.5
TARGET_BATCH_ADDS_PER_S = 2000.0
CONCURRENCY = (1, 8, 32)
BATCH = 1000
HOST = "127.0.0.1"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _quiet(_line: str) -> None:
    """The bench prints its own progress; the service's announcements go nowhere."""


class _Queries:
    """Distinct search queries, handed out once each across threads."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            self._next += 1
            return search_query(self._next, self.seed)


def _http_searches(base_url: str, key: str, queries: Sequence[str]) -> list[float]:
    seconds = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as api:
        for query in queries:
            start = time.perf_counter()
            response = api.post("/v1/search", json={"query": query})
            seconds.append(time.perf_counter() - start)
            response.raise_for_status()
    return seconds


def _store_searches(store: MemoryStore, tenant: Tenant, queries: Sequence[str]) -> list[float]:
    seconds = []
    for query in queries:
        start = time.perf_counter()
        store.search_similar_memories(query, tenant.user_id, tenant.project_id)
        seconds.append(time.perf_counter() - start)
    return seconds


def _concurrent_searches(
    base_url: str, key: str, clients: int, seconds: float, queries: _Queries
) -> tuple[float, list[float]]:
    """(searches per second, every search's latency) with ``clients`` threads for ``seconds``."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)
    stop_at = 0.0

    def client() -> None:
        mine: list[float] = []
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as api:
            api.get("/healthz")  # connect before the clock starts
            start_line.wait()
            while time.perf_counter() < stop_at:
                query = queries.take()
                begin = time.perf_counter()
                response = api.post("/v1/search", json={"query": query})
                mine.append(time.perf_counter() - begin)
                if response.status_code != 200:
                    with lock:
                        failures.append(response.text[:200])
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    stop_at = time.perf_counter() + seconds
    begin = time.perf_counter()
    start_line.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    if failures:
        raise RuntimeError(f"{len(failures)} searches failed, e.g. {failures[0]}")
    return len(latencies) / wall, latencies


def _batch_adds(base_url: str, key: str, rows: int, seed: int) -> float:
    """Memories accepted per second, sent as batches of BATCH from one client."""
    bodies = []
    logs = list(work_logs(rows, seed + 7))
    for start in range(0, rows, BATCH):
        memories = [
            {"raw_data": log, "external_id": f"batch-{start + i}"}
            for i, log in enumerate(logs[start : start + BATCH])
        ]
        bodies.append(json.dumps({"memories": memories}).encode())
    accepted = 0
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=300) as api:
        api.get("/healthz")
        begin = time.perf_counter()
        for body in bodies:
            response = api.post("/v1/memories/batch", content=body)
            response.raise_for_status()
            accepted += sum("id" in r for r in response.json()["results"])
        wall = time.perf_counter() - begin
    if accepted != rows:
        raise RuntimeError(f"{rows - accepted} of {rows} batched memories were refused")
    return accepted / wall


def _seed(store: MemoryStore, tenant: Tenant, rows: int, seed: int) -> None:
    logs = list(work_logs(rows, seed))
    for start in range(0, rows, BATCH):
        records = [
            {"user_id": tenant.user_id, "project_id": tenant.project_id, "raw_data": log}
            for log in logs[start : start + BATCH]
        ]
        store.create_memory_logs(records)
    counts = store.process_pending(tenant.user_id, tenant.project_id)
    progress(f"service: {rows} memories stored and processed: {counts}")


def run(
    base: Path,
    *,
    rows: int,
    queries: int,
    rounds: int,
    seconds: float,
    batch_rows: int,
    seed: int,
) -> SectionResult:
    """Run benchmark E in ``base/service`` and return its figures."""
    result = SectionResult("service")
    home = fresh_section_home(base, "service")
    settings = section_settings(home)
    tenant = Tenant("bench-user", "bench-service")
    batch_tenant = Tenant("bench-user", "bench-service-batch")
    progress(f"service: home {home}; {rows} memories, {queries} queries x {rounds} rounds")
    try:
        with MemoryStore(settings, ensure_services(settings)) as store:
            _seed(store, tenant, rows, seed)
            key = create_key(store.db, tenant, "bench").key
            batch_key = create_key(store.db, batch_tenant, "bench batch").key
            warm = [search_query(-i, seed) for i in range(1, 21)]
            _store_searches(store, tenant, warm)

            port = _free_port()
            base_url = f"http://{HOST}:{port}"
            with running_service(settings, HOST, port, _quiet) as process:
                wait_until_ready(HOST, port, process)
                _http_searches(base_url, key, warm)
                progress("service: serve is ready; latency rounds")
                in_process: list[float] = []
                through_http: list[float] = []
                for r in range(rounds):
                    chunk = [search_query(r * queries + i, seed) for i in range(queries)]
                    in_process += _store_searches(store, tenant, chunk)
                    through_http += _http_searches(base_url, key, chunk)
                local = latency_summary(in_process)
                remote = latency_summary(through_http)
                result.details["in_process_ms"] = local
                result.details["http_1_client_ms"] = remote
                result.add("in-process search p50", local["p50_ms"], "ms")
                result.add("in-process search p95", local["p95_ms"], "ms")
                result.add("HTTP search p50, 1 client", remote["p50_ms"], "ms")
                result.add("HTTP search p95, 1 client", remote["p95_ms"], "ms")
                result.add(
                    "HTTP p50 - in-process p50",
                    remote["p50_ms"] - local["p50_ms"],
                    "ms",
                    at_most=TARGET_HTTP_OVERHEAD_MS,
                )

                pool = _Queries(seed + 1000)
                rates: dict[int, float] = {}
                for clients in CONCURRENCY:
                    rate, latencies = _concurrent_searches(base_url, key, clients, seconds, pool)
                    rates[clients] = rate
                    summary = latency_summary(latencies)
                    result.details[f"http_{clients}_clients"] = {"searches_per_s": rate, **summary}
                    result.add(f"HTTP searches/s, {clients} clients", rate, "/s")
                    result.add(f"  p50 at {clients}", summary["p50_ms"], "ms")
                    result.add(f"  p95 at {clients}", summary["p95_ms"], "ms")
                    progress(f"service: {clients} clients: {rate:.1f} searches/s")
                result.add(
                    "searches/s at 32 / at 1",
                    rates[32] / rates[1],
                    "x",
                    at_least=TARGET_SCALING,
                )

                progress(f"service: batch add of {batch_rows} memories")
                adds = _batch_adds(base_url, batch_key, batch_rows, seed)
                result.add(
                    f"batch add of {batch_rows:,} memories",
                    adds,
                    "memories/s",
                    at_least=TARGET_BATCH_ADDS_PER_S,
                )

            progress("service: the same clients without query batching")
            port = _free_port()
            base_url = f"http://{HOST}:{port}"
            with running_service(
                settings, HOST, port, _quiet, extra_args=["--no-query-batching"]
            ) as process:
                wait_until_ready(HOST, port, process)
                _http_searches(base_url, key, warm)
                plain = {}
                for clients in (1, 32):
                    plain[clients], _ = _concurrent_searches(base_url, key, clients, seconds, pool)
                    result.add(f"no batching: searches/s, {clients} clients", plain[clients], "/s")
                result.add("no batching: searches/s at 32 / at 1", plain[32] / plain[1], "x")
                result.details["no_batching_searches_per_s"] = plain
    finally:
        stop_section_services(home)
    return result
