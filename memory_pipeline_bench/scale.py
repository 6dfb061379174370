"""Benchmark C (issue 5): many tenants at once, and one new row, under ``memory-pipeline up``.

1. The raw encode time of the batch's texts is measured first, in this process, before
   anything else runs.
2. ``memory-pipeline up`` starts as a subprocess (its own process group) on a free port, with
   the benchmark's own home, so it owns its PostgreSQL and Chroma servers.
3. ``rows`` rows over ``tenants`` tenants are inserted in one transaction (COPY); the clock runs
   until every row is embedded and a sample of them is found by search.
4. ``latency_rows`` rows are then inserted one at a time, the platform otherwise idle, each
   timed from commit until its status is ``embedded`` and a search finds it.
5. ``up`` gets SIGTERM; the benchmark checks that no process of it and neither server is left.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from memory_pipeline import MemoryStore
from memory_pipeline.embedding import load_embedder
from memory_pipeline.extraction import extract_memory
from memory_pipeline.local_services import ensure_services
from memory_pipeline.local_services.local_chroma import running_local_chroma
from memory_pipeline.local_services.local_postgres import local_postgres_uri
from memory_pipeline.settings import Settings
from memory_pipeline.storage.memory_writes import copy_pending_rows
from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.homes import fresh_section_home, section_settings, stop_section_services
from memory_pipeline_bench.results import SectionResult, latency_summary, progress
from memory_pipeline_bench.synthetic import work_logs

TARGET_FACTOR = 1.3
TARGET_SLACK_SECONDS = 60.0
TARGET_ROW_P95_SECONDS = 20.0
UP_READY_TIMEOUT = 300.0
ROW_TIMEOUT = 180.0
STOP_TIMEOUT = 120.0
SEARCH_SAMPLE = 20
PROJECT = "bench-scale"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_up(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("memory-pipeline")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "memory_pipeline.cli"]
    env = {**os.environ, "MEMORY_PIPELINE_HOME": str(settings.home)}
    env.pop("DAGSTER_HOME", None)
    log = open(settings.home / "bench-up.log", "ab")  # noqa: SIM115 - the child keeps it open
    try:
        return subprocess.Popen(
            [*command, "up", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _wait_until_ready(process: subprocess.Popen[bytes], settings: Settings) -> float:
    start = time.monotonic()
    log = settings.home / "bench-up.log"
    while time.monotonic() - start < UP_READY_TIMEOUT:
        if process.poll() is not None:
            raise RuntimeError(
                f"`memory-pipeline up` exited with {process.returncode}: {log.read_text()[-1500:]}"
            )
        if "Dagster UI:" in log.read_text(errors="replace"):
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"`memory-pipeline up` not ready after {UP_READY_TIMEOUT:.0f} s; see {log}")


def _stop_up(process: subprocess.Popen[bytes], settings: Settings) -> dict[str, Any]:
    """SIGTERM ``up``; report how long it took and anything left running (which is then killed)."""
    try:
        family = [
            process.pid,
            *(c.pid for c in psutil.Process(process.pid).children(recursive=True)),
        ]
    except psutil.NoSuchProcess:
        family = [process.pid]
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    stop_seconds = time.monotonic() - start
    time.sleep(1.0)
    left: list[str] = []
    for pid in family:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            left.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    if local_postgres_uri(settings.postgres_data_dir) is not None:
        left.append("PostgreSQL server of the home")
    if running_local_chroma(settings.chroma_data_dir) is not None:
        left.append("Chroma server of the home")
    if left:
        stop_section_services(settings.home)
    return {"stop_seconds": stop_seconds, "processes_watched": len(family), "left_running": left}


def _run_stats(store: MemoryStore) -> dict[str, Any]:
    """Dagster runs so far (instance storage lives in schema ``dagster`` of the app database)."""
    try:
        with store.db.connection() as conn:
            rows = conn.execute(
                """SELECT status, count(*) AS runs,
                          avg(end_time - start_time) AS mean_s,
                          max(end_time - start_time) AS max_s,
                          min(start_time) AS first_start, max(end_time) AS last_end
                   FROM dagster.runs GROUP BY status"""
            ).fetchall()
    except Exception as exc:  # the schema is Dagster's; report rather than fail
        return {"error": str(exc)}
    return {r["status"]: {k: r[k] for k in ("runs", "mean_s", "max_s")} for r in rows}


def _states(store: MemoryStore, keys: list[str]) -> dict[str, int]:
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT status, count(*) AS n FROM memory_log WHERE tenant_key = ANY(%s) GROUP BY status",
            (keys,),
        ).fetchall()
    return {r["status"]: int(r["n"]) for r in rows}


def _found_by_search(store: MemoryStore, tenant: Tenant, log_id: int, text: str) -> bool:
    hits = store.search_similar_memories(
        text[:500], tenant.user_id, tenant.project_id, limit=10, mode="vector"
    )
    return any(h.log_id == log_id for h in hits)


def _bulk_until_searchable(
    store: MemoryStore, batch: list[tuple[Tenant, dict[str, Any], str]], deadline_s: float
) -> dict[str, Any]:
    keys = sorted({t.key for t, _, _ in batch})
    with store.db.connection() as conn, conn.transaction():
        copy_pending_rows(conn, batch)
    start = time.monotonic()
    last_report = 0.0
    states: dict[str, int] = {}
    while True:
        elapsed = time.monotonic() - start
        states = _states(store, keys)
        open_rows = states.get("pending", 0) + states.get("failed", 0)
        if open_rows == 0:
            break
        if elapsed > deadline_s:
            raise TimeoutError(
                f"{open_rows} of {len(batch)} rows still open after {elapsed:.0f} s: {states}"
            )
        if elapsed - last_report >= 15:
            progress(f"scale: {elapsed:.0f} s, states {states}")
            last_report = elapsed
        time.sleep(1.0)
    embedded_seconds = time.monotonic() - start
    # searchable: a sample of the rows is found by their own text
    sample = random.Random(0).sample(batch, min(SEARCH_SAMPLE, len(batch)))
    with store.db.connection() as conn:
        ids = {
            r["external_id"]: int(r["id"])
            for r in conn.execute(
                "SELECT id, external_id FROM memory_log WHERE external_id = ANY(%s)",
                ([e for _, _, e in sample],),
            ).fetchall()
        }
    missing = [
        e
        for t, raw, e in sample
        if not _found_by_search(store, t, ids[e], extract_memory(raw).text)
    ]
    return {
        "embedded_seconds": embedded_seconds,
        "searchable_seconds": time.monotonic() - start,
        "states": states,
        "search_sample": len(sample),
        "search_sample_missing": missing,
    }


def _row_latencies(store: MemoryStore, tenants: list[Tenant], count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    latencies: list[float] = []
    docs = list(work_logs(count, seed + 7))
    for index, raw in enumerate(docs):
        time.sleep(rng.uniform(0.0, 3.0))  # spread inserts over the sensor's tick phase
        tenant = rng.choice(tenants)
        text = extract_memory(raw).text
        log_id = store.create_memory_log(tenant.user_id, tenant.project_id, raw)
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if elapsed > ROW_TIMEOUT:
                raise TimeoutError(f"row {log_id} not searchable after {ROW_TIMEOUT:.0f} s")
            row = store.get_memory_log(log_id)
            if (
                row
                and row["status"] == "embedded"
                and _found_by_search(store, tenant, log_id, text)
            ):
                break
            time.sleep(0.1)
        latencies.append(elapsed)
        progress(f"scale: row {index + 1}/{count} searchable after {elapsed:.1f} s")
    return latencies


def run(base: Path, *, rows: int, tenants: int, latency_rows: int, seed: int) -> SectionResult:
    """Run benchmark C in ``base/scale`` and return its figures."""
    result = SectionResult("scale")
    home = fresh_section_home(base, "scale")
    settings = section_settings(home)
    tenant_list = [Tenant(f"bench-user-{i:04d}", PROJECT) for i in range(tenants)]
    batch = [
        (tenant_list[i % tenants], raw, f"scale-{i}")
        for i, raw in enumerate(work_logs(rows, seed + 2))
    ]
    progress(f"scale: home {home}; {rows} rows over {tenants} tenants")

    embedder = load_embedder(
        settings.embedding_model,
        batch_size=settings.embedding_batch_size,
        precision=settings.embedding_precision,
        trace_queries=settings.query_trace,
        backend=settings.embedding_backend,
        exports_dir=settings.models_dir,
        sentence_vectors=settings.sentence_vectors,
    )
    chunks = [c for _, raw, _ in batch for c in embedder.chunk_text(extract_memory(raw).text)]
    embedder.embed_batch(chunks[:64])  # warm-up, untimed
    start = time.perf_counter()
    embedder.embed_batch(chunks)
    raw_seconds = time.perf_counter() - start
    progress(f"scale: raw encode of {len(chunks)} chunks: {raw_seconds:.1f} s")

    port = _free_port()
    process = _start_up(settings, port)
    stop_report: dict[str, Any] = {}
    try:
        ready = _wait_until_ready(process, settings)
        progress(f"scale: `memory-pipeline up` ready on port {port} after {ready:.0f} s")
        result.details["up_ready_seconds"] = ready
        with MemoryStore(settings, ensure_services(settings), embedder=embedder) as store:
            target = TARGET_FACTOR * raw_seconds + TARGET_SLACK_SECONDS
            bulk = _bulk_until_searchable(store, batch, deadline_s=max(3 * target, 600.0))
            result.details["bulk"] = bulk
            result.details["runs_after_bulk"] = _run_stats(store)
            progress(f"scale: all {rows} rows searchable after {bulk['searchable_seconds']:.0f} s")
            latencies = _row_latencies(store, tenant_list, latency_rows, seed)
            result.details["row_latency"] = latency_summary(latencies)
            result.details["runs_total"] = _run_stats(store)
    finally:
        stop_report = _stop_up(process, settings)
        result.details["stop"] = stop_report
        progress(f"scale: `memory-pipeline up` stopped: {stop_report}")

    result.add(f"raw encode of the {rows} rows' texts", raw_seconds, "s")
    result.add(
        f"{rows} rows / {tenants} tenants: insert → all searchable",
        bulk["searchable_seconds"],
        "s",
        at_most=target,
    )
    result.add("  of which until all embedded", bulk["embedded_seconds"], "s")
    summary = result.details["row_latency"]
    result.add("one new row → searchable p50", summary["p50_ms"] / 1000, "s")
    result.add(
        "one new row → searchable p95",
        summary["p95_ms"] / 1000,
        "s",
        at_most=TARGET_ROW_P95_SECONDS,
    )
    result.add(
        "processes or servers left after SIGTERM",
        float(len(stop_report["left_running"])),
        "count",
        at_most=0,
    )
    return result
