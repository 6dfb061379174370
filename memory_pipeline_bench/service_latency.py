"""Benchmark E (issue 16): the memory service — search through HTTP beside in-process, search
throughput as clients grow, and batch adds.

Setup (not timed): ``rows`` synthetic work logs stored and embedded in one tenant through
``MemoryStore``; a tenant key; ``memory-pipeline serve`` started in the section's home, and an
in-process searcher: a child process holding its own ``MemoryStore``, started with the
environment ``serve`` gives itself (OpenMP's wait policy, see decision 0163), so the two differ
only by the HTTP hop.

Measured, all in one run:

- search latency, default mode, one query at a time: the in-process searcher's
  ``search_similar_memories`` and ``POST /v1/search`` through one keep-alive connection,
  interleaved in ``rounds`` so that machine load hits both alike; the target compares p50s;
- searches/s with 1, 8 and 32 concurrent HTTP clients, each sending distinct queries for
  ``seconds``, and the latency each client saw; the target is the ratio at 32 ÷ at 1;
- the same 1 and 32 clients against a second ``serve`` started with ``--no-query-batching``,
  so the batcher's share of that ratio is measured, not assumed;
- CPU milliseconds per search in each phase, by process (the service, the in-process searcher,
  Postgres, Chroma, the bench's clients): on a machine others share, wall-clock figures swing
  with their load, CPU per search much less;
- ``batch_rows`` memories sent as batches of 1,000 (``POST /v1/memories/batch``, bodies
  serialised before the clock starts) by one client, then another ``batch_rows`` by four:
  memories accepted per second. Embedding them is the pipeline's work, not the service's, and
  is not part of this figure.

Clients use ``http.client`` on plain threads: the load generator shares the machine's cores
with the service, so it is kept as light as a client can be.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from memory_pipeline import MemoryStore
from memory_pipeline.local_services import ensure_services
from memory_pipeline.local_services.local_chroma import running_local_chroma
from memory_pipeline.service.keys import create_key
from memory_pipeline.service.launcher import running_service, wait_until_ready
from memory_pipeline.service.server import OPENMP_WAIT_POLICY
from memory_pipeline.settings import Settings
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
WARM_QUERIES = 20


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _quiet(_line: str) -> None:
    """The bench prints its own progress; the service's announcements go nowhere."""


def _searcher_environment(home: Path) -> dict[str, str]:
    """The environment of ``serve`` and of the in-process searcher alike."""
    env = {**os.environ, "MEMORY_PIPELINE_HOME": str(home)}
    env.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)
    return env


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


class _Client:
    """One keep-alive HTTP/1.1 connection to the service, authenticated by a key."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=300)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body, self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def search(self, query: str) -> tuple[int, bytes]:
        return self.post("/v1/search", json.dumps({"query": query}).encode())

    def close(self) -> None:
        self.conn.close()


class _CpuMeter:
    """CPU seconds used so far by each process a search touches."""

    def __init__(self, settings: Settings, **pids: int) -> None:
        postmaster = settings.postgres_data_dir / "postmaster.pid"
        chroma = running_local_chroma(settings.chroma_data_dir)
        self.pids = {
            **pids,
            "postgres": int(postmaster.read_text().split()[0]),
            "chroma": chroma.pid if chroma else 0,
        }

    def read(self) -> dict[str, float]:
        used = {"clients": time.process_time()}
        for name, pid in self.pids.items():
            used[name] = _tree_cpu_seconds(pid)
        return used

    def per_search(self, before: dict[str, float], searches: int) -> dict[str, float]:
        """Milliseconds of CPU per search since ``before``, by process."""
        after = self.read()
        return {k: 1000 * (after[k] - before[k]) / max(searches, 1) for k in after}


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live ones (Postgres backends)."""
    if not pid:
        return 0.0
    try:
        root = psutil.Process(pid)
        total = sum(root.cpu_times())  # user, system, children_user, children_system, ...
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


def _add_cpu(result: SectionResult, label: str, cpu: dict[str, float], searcher: str) -> None:
    """CPU per search of the searching process and of every process together."""
    result.details[f"cpu_ms_per_search, {label}"] = cpu
    result.add(f"  CPU per search, {label}: {searcher}", cpu[searcher], "ms")
    result.add(f"  CPU per search, {label}: all processes", sum(cpu.values()), "ms")


# ------------------------------------------------------------------- the in-process searcher
def searcher_main() -> None:
    """The in-process searcher's loop: a JSON list of queries per stdin line, their latencies
    (seconds) per stdout line. Its tenant comes as argv (user, project)."""
    user, project = sys.argv[2], sys.argv[3]
    with MemoryStore.from_env() as store:
        for line in sys.stdin:
            seconds = []
            for query in json.loads(line):
                start = time.perf_counter()
                store.search_similar_memories(query, user, project)
                seconds.append(time.perf_counter() - start)
            print(json.dumps(seconds), flush=True)


class _InProcessSearcher:
    """A child process searching through its own MemoryStore (see :func:`searcher_main`)."""

    def __init__(self, home: Path, tenant: Tenant) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, "searcher", tenant.user_id, tenant.project_id],
            env=_searcher_environment(home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def search(self, queries: Sequence[str]) -> list[float]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(list(queries)) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the in-process searcher exited ({self.process.poll()})")
        return list(json.loads(line))

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def _in_process_searcher(home: Path, tenant: Tenant) -> Iterator[_InProcessSearcher]:
    searcher = _InProcessSearcher(home, tenant)
    try:
        yield searcher
    finally:
        searcher.close()


# --------------------------------------------------------------------------------- phases
def _http_searches(port: int, key: str, queries: Sequence[str]) -> list[float]:
    seconds = []
    client = _Client(port, key)
    try:
        for query in queries:
            start = time.perf_counter()
            status, body = client.search(query)
            seconds.append(time.perf_counter() - start)
            if status != 200:
                raise RuntimeError(f"search answered {status}: {body[:200]!r}")
    finally:
        client.close()
    return seconds


def _concurrent_searches(
    port: int, key: str, clients: int, seconds: float, queries: _Queries
) -> tuple[float, list[float]]:
    """(searches per second, every search's latency) with ``clients`` threads for ``seconds``."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)
    stop_at = 0.0

    def run_client() -> None:
        mine: list[float] = []
        client = _Client(port, key)
        try:
            client.conn.connect()  # before the clock starts
            start_line.wait()
            while time.perf_counter() < stop_at:
                query = queries.take()
                begin = time.perf_counter()
                status, body = client.search(query)
                mine.append(time.perf_counter() - begin)
                if status != 200:
                    with lock:
                        failures.append(body[:200].decode(errors="replace"))
        finally:
            client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run_client) for _ in range(clients)]
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


def _batch_adds(port: int, key: str, rows: int, seed: int, clients: int, tag: str) -> float:
    """Memories accepted per second, sent as batches of BATCH by ``clients`` connections."""
    logs = list(work_logs(rows, seed + 7))
    bodies = []
    for start in range(0, rows, BATCH):
        memories = [
            {"raw_data": log, "external_id": f"{tag}-{start + i}"}
            for i, log in enumerate(logs[start : start + BATCH])
        ]
        bodies.append(json.dumps({"memories": memories}).encode())
    accepted: list[int] = []
    failures: list[str] = []

    def send(mine: list[bytes], client: _Client) -> None:
        for body in mine:
            status, answer = client.post("/v1/memories/batch", body)
            if status != 200:
                failures.append(f"batch answered {status}: {answer[:200]!r}")
                return
            accepted.append(sum("id" in r for r in json.loads(answer)["results"]))

    connections = [_Client(port, key) for _ in range(clients)]
    try:
        for client in connections:
            client.conn.connect()
        threads = [
            threading.Thread(target=send, args=(bodies[i::clients], client))
            for i, client in enumerate(connections)
        ]
        begin = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - begin
    finally:
        for client in connections:
            client.close()
    if failures or sum(accepted) != rows:
        raise RuntimeError(f"{rows - sum(accepted)} of {rows} memories refused: {failures[:1]}")
    return rows / wall


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


def _latency_rounds(
    result: SectionResult,
    settings: Settings,
    searcher: _InProcessSearcher,
    service_pid: int,
    port: int,
    key: str,
    queries: int,
    rounds: int,
    seed: int,
) -> None:
    meter = _CpuMeter(settings, service=service_pid, searcher=searcher.process.pid)
    in_process: list[float] = []
    through_http: list[float] = []
    cpu: dict[str, dict[str, float]] = {"in-process": {}, "HTTP, 1 client": {}}
    for r in range(rounds):
        chunk = [search_query(r * queries + i, seed) for i in range(queries)]
        for label, run in (
            ("in-process", lambda c=chunk: searcher.search(c)),
            ("HTTP, 1 client", lambda c=chunk: _http_searches(port, key, c)),
        ):
            before = meter.read()
            (in_process if label == "in-process" else through_http).extend(run())
            for k, v in meter.per_search(before, queries * rounds).items():
                cpu[label][k] = cpu[label].get(k, 0.0) + v
    local, remote = latency_summary(in_process), latency_summary(through_http)
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
    _add_cpu(result, "in-process", cpu["in-process"], "searcher")
    _add_cpu(result, "HTTP, 1 client", cpu["HTTP, 1 client"], "service")


def _throughput(
    result: SectionResult,
    meter: _CpuMeter,
    port: int,
    key: str,
    levels: Sequence[int],
    seconds: float,
    queries: _Queries,
    label: str = "",
) -> dict[int, float]:
    rates: dict[int, float] = {}
    for clients in levels:
        before = meter.read()
        rate, latencies = _concurrent_searches(port, key, clients, seconds, queries)
        cpu = meter.per_search(before, len(latencies))
        rates[clients] = rate
        summary = latency_summary(latencies)
        name = f"{label}{clients} clients"
        result.details[f"http, {name}"] = {"searches_per_s": rate, **summary}
        result.add(f"{label}searches/s, {clients} clients", rate, "/s")
        result.add(f"  {label}p50 at {clients}", summary["p50_ms"], "ms")
        result.add(f"  {label}p95 at {clients}", summary["p95_ms"], "ms")
        _add_cpu(result, name, cpu, "service")
        progress(f"service: {name}: {rate:.1f} searches/s")
    return rates


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
    result.details["omp_wait_policy"] = _searcher_environment(home)["OMP_WAIT_POLICY"]
    try:
        with MemoryStore(settings, ensure_services(settings)) as store:
            _seed(store, tenant, rows, seed)
            key = create_key(store.db, tenant, "bench").key
            batch_key = create_key(store.db, batch_tenant, "bench batch").key
        warm = [search_query(-i, seed) for i in range(1, WARM_QUERIES + 1)]
        pool = _Queries(seed + 1000)

        port = _free_port()
        with (
            _in_process_searcher(home, tenant) as searcher,
            running_service(settings, HOST, port, _quiet) as service,
        ):
            searcher.search(warm)
            wait_until_ready(HOST, port, service)
            _http_searches(port, key, warm)
            progress("service: serve is ready; latency rounds")
            _latency_rounds(
                result, settings, searcher, service.pid, port, key, queries, rounds, seed
            )
            meter = _CpuMeter(settings, service=service.pid)
            rates = _throughput(result, meter, port, key, CONCURRENCY, seconds, pool)
            result.add(
                "searches/s at 32 / at 1", rates[32] / rates[1], "x", at_least=TARGET_SCALING
            )
            progress(f"service: batch add of {batch_rows} memories")
            adds = _batch_adds(port, batch_key, batch_rows, seed, 1, "one")
            result.add(
                f"batch add of {batch_rows:,} memories, 1 client",
                adds,
                "memories/s",
                at_least=TARGET_BATCH_ADDS_PER_S,
            )
            adds = _batch_adds(port, batch_key, batch_rows, seed, 4, "four")
            result.add(f"batch add of {batch_rows:,} memories, 4 clients", adds, "memories/s")

        progress("service: the same clients without query batching")
        port = _free_port()
        with running_service(
            settings, HOST, port, _quiet, extra_args=["--no-query-batching"]
        ) as service:
            wait_until_ready(HOST, port, service)
            _http_searches(port, key, warm)
            meter = _CpuMeter(settings, service=service.pid)
            plain = _throughput(result, meter, port, key, (1, 32), seconds, pool, "no batching: ")
            result.add("no batching: searches/s at 32 / at 1", plain[32] / plain[1], "x")
    finally:
        stop_section_services(home)
    return result


def _main(argv: list[str]) -> Any:
    if argv[1:2] == ["searcher"]:
        return searcher_main()
    raise SystemExit("usage: python -m memory_pipeline_bench.service_latency searcher USER PROJECT")


if __name__ == "__main__":
    _main(sys.argv)
