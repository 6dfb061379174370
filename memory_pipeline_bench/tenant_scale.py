"""Benchmark G (issue 28): many small tenants under ``memory-pipeline up``, as an operator loads
them.

For each tenant count, in a fresh home: synthetic tenants with ``1..max_memories`` short notes
each are written to a JSONL file and loaded with ``memory-pipeline import``; the clock runs until
every row is embedded. Then, from the daemon's tick records, the pending-rows sensor's tick
durations during the backlog and idle afterwards; Dagster runs; search p50/p95 on tenants never
searched (cold) and on one tenant again and again (warm); ``status --json`` and ``tenants``
wall time; the drift check over every tenant; Chroma's disk, collections and RSS; and rows
inserted one at a time into random tenants, each timed until a search finds it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from memory_pipeline import MemoryStore
from memory_pipeline.consistency import compare_tenants
from memory_pipeline.local_services import ensure_services
from memory_pipeline.storage import tenant_status
from memory_pipeline_bench.homes import fresh_section_home, section_settings
from memory_pipeline_bench.results import SectionResult, latency_summary, progress
from memory_pipeline_bench.scale import _free_port, _start_up, _stop_up, _wait_until_ready

SENSOR = "pending_rows_sensor"
PROJECT = "bench-tenants"
IDLE_SECONDS = 60.0
COLD_SEARCHES, WARM_SEARCHES = 30, 100
NEW_ROW_TIMEOUT = 300.0
#: Issue 28's targets at 100k tenants (2 cores).
IDLE_TICK_P95_S, NEW_ROW_P95_S = 2.0, 30.0
WORDS = [
    "river",
    "harbour",
    "lantern",
    "orchard",
    "violin",
    "meadow",
    "granite",
    "comet",
    "falcon",
    "saddle",
    "copper",
    "willow",
    "pepper",
    "tunnel",
    "glacier",
    "bakery",
    "ticket",
    "mirror",
    "puzzle",
    "canyon",
    "kettle",
    "marble",
    "wagon",
    "poet",
]
CLI = [sys.executable, "-m", "memory_pipeline.cli"]


def note(rng: random.Random) -> str:
    """A short note of 8-16 words."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + "."


def user_of(index: int) -> str:
    return f"bench-user-{index:06d}"


def write_import_file(path: Path, tenants: int, max_memories: int, seed: int) -> int:
    """The JSONL an application would import: ``tenants`` tenants with ``1..max_memories``
    notes each; returns the number of records (the same for the same arguments)."""
    rng = random.Random(seed)
    count = 0
    with path.open("w") as out:
        for i in range(tenants):
            for k in range(rng.randint(1, max_memories)):
                record = {
                    "user_id": user_of(i),
                    "project_id": PROJECT,
                    "raw_data": {"content": f"note {k} of user {i}: {note(rng)}"},
                    "external_id": f"g-{i}-{k}",
                }
                out.write(json.dumps(record) + "\n")
                count += 1
    return count


def sensor_ticks(store: MemoryStore, since: float = 0.0) -> list[dict[str, Any]]:
    """The pending-rows sensor's finished ticks since ``since`` (epoch s), from the daemon's
    tick records in the instance database (schema ``dagster``)."""
    import dagster._core.scheduler.instigation  # noqa: F401 - registers TickData for serdes
    from dagster._serdes import deserialize_value

    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT tick_body FROM dagster.job_ticks WHERE timestamp >= to_timestamp(%s) "
            "ORDER BY id",
            (since,),
        ).fetchall()
    ticks = []
    for row in rows:
        tick = deserialize_value(row["tick_body"])
        if tick.instigator_name != SENSOR or not tick.end_timestamp:
            continue
        ticks.append(
            {
                "at": tick.timestamp,
                "seconds": tick.end_timestamp - tick.timestamp,
                "status": tick.status.value,
                "runs": len(tick.run_ids),
                "error": tick.error.message[:300] if tick.error else None,
            }
        )
    return ticks


def tick_summary(ticks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Tick durations (ms) and the first errors."""
    return {
        **latency_summary([t["seconds"] for t in ticks]),
        "runs_requested": sum(t["runs"] for t in ticks),
        "errors": [t["error"] for t in ticks if t["error"]][:3],
    }


def _rows_by_status(store: MemoryStore) -> dict[str, int]:
    with store.db.connection() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM memory_log GROUP BY 1").fetchall()
    return {r["status"]: int(r["n"]) for r in rows}


def _rss_by_kind(root: int, into: dict[str, int]) -> None:
    kinds = {
        "chroma run": "chroma",
        "dagster api grpc": "code server",
        "dagster._daemon": "daemon",
        "dagster_webserver": "webserver",
        "spawn_main": "run worker",
        "cli serve": "service",
        "postgres": "postgres",
    }
    for proc in psutil.Process(root).children(recursive=True):
        try:
            line, rss = " ".join(proc.cmdline()), proc.memory_info().rss >> 20
        except psutil.Error:
            continue
        kind = next((k for pattern, k in kinds.items() if pattern in line), None)
        if kind:
            into[kind] = max(into.get(kind, 0), rss)


def _until_embedded(store: MemoryStore, root: int, deadline_s: float) -> dict[str, Any]:
    start, last, rss = time.monotonic(), 0.0, {}
    while True:
        states = _rows_by_status(store)
        _rss_by_kind(root, rss)
        elapsed = time.monotonic() - start
        if states.get("pending", 0) + states.get("failed", 0) == 0:
            return {"seconds": elapsed, "states": states, "rss_mb_max": rss}
        if elapsed > deadline_s:
            return {"seconds": None, "states": states, "rss_mb_max": rss, "gave_up_s": elapsed}
        if elapsed - last >= 30:
            progress(f"tenants: {elapsed:.0f} s, {states}, load {os.getloadavg()[0]:.1f}")
            last = elapsed
        time.sleep(2.0)


def _timed_searches(store: MemoryStore, users: Sequence[str]) -> list[float]:
    times = []
    for user in users:
        start = time.perf_counter()
        store.search_similar_memories("harbour lantern", user, PROJECT)
        times.append(time.perf_counter() - start)
    return times


def _wall(args: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=900)
    return time.monotonic() - start, done.stdout


def _new_rows(store: MemoryStore, tenants: int, count: int, rng: random.Random) -> list[float]:
    latencies = []
    for i in range(count):
        user, text = user_of(rng.randrange(tenants)), f"fresh memo {i}: {note(rng)}"
        log_id = store.create_memory_log(user, PROJECT, {"content": text})
        start = time.monotonic()
        while time.monotonic() - start < NEW_ROW_TIMEOUT:
            row = store.get_memory_log(log_id)
            hits = store.search_similar_memories(text, user, PROJECT) if row else []
            if row and row["status"] == "embedded" and any(h.log_id == log_id for h in hits):
                break
            time.sleep(0.2)
        latencies.append(time.monotonic() - start)
    return latencies


def measure(base: Path, tenants: int, max_memories: int, new_rows: int, seed: int) -> dict:
    """Every figure of one tenant count, each step recording its failure and going on."""
    out: dict[str, Any] = {"tenants": tenants}
    home = fresh_section_home(base, f"tenants-{tenants}")
    settings = section_settings(home)
    path = home / "import.jsonl"
    out["rows"] = write_import_file(path, tenants, max_memories, seed)
    env = {**os.environ, "MEMORY_PIPELINE_HOME": str(home)}
    process = _start_up(settings, _free_port())
    try:
        out["up_ready_s"] = _wait_until_ready(process, settings)
        out["import_s"], printed = _wall(["import", str(path), "--json"], env)
        out["import"] = json.loads(printed or "{}")
        imported_at = time.time()
        with MemoryStore(settings, ensure_services(settings)) as store:
            out["backlog"] = _until_embedded(store, process.pid, max(1800.0, out["rows"] / 10))
            out["ticks_backlog"] = tick_summary(sensor_ticks(store, imported_at))
            idle_from = time.time()
            time.sleep(IDLE_SECONDS)  # the idle sensor is what is measured here
            out["ticks_idle"] = tick_summary(sensor_ticks(store, idle_from))
            with store.db.connection() as conn:
                runs = conn.execute(
                    "SELECT status, count(*) AS n FROM dagster.runs GROUP BY 1"
                ).fetchall()
                out["runs"] = {r["status"]: int(r["n"]) for r in runs}
                out["partitions"] = conn.execute(
                    "SELECT count(*) AS n FROM dagster.dynamic_partitions"
                ).fetchone()["n"]
                out["shards"] = conn.execute("SELECT shards FROM tenant_layout").fetchone()[
                    "shards"
                ]
                everyone = tenant_status.all_tenants(conn)
            rng = random.Random(seed + 1)
            picks = [user_of(i) for i in rng.sample(range(tenants), COLD_SEARCHES + 1)]
            out["search_cold"] = latency_summary(_timed_searches(store, picks[:-1]))
            out["search_warm"] = latency_summary(
                _timed_searches(store, [picks[-1]] * WARM_SEARCHES)
            )
            out["status_json_s"], printed = _wall(["status", "--json"], env)
            out["status_json_bytes"] = len(printed)
            out["tenants_lookup_s"], _ = _wall(["tenants", "--user", picks[0], "--json"], env)
            start = time.monotonic()
            drift = compare_tenants(store.db, store.vector_store, everyone, store.embedder.model_id)
            out["drift_check_s"] = time.monotonic() - start
            out["drift_out_of_sync"] = sum(not d.in_sync for d in drift.values())
            out["chroma_collections"] = store.vector_store.client.count_collections()
            du = subprocess.run(["du", "-sm", str(settings.chroma_data_dir)], capture_output=True)
            out["chroma_disk_mb"] = int(du.stdout.split()[0])
            out["new_row"] = latency_summary(_new_rows(store, tenants, new_rows, rng))
            out["ticks_with_new_rows"] = tick_summary(sensor_ticks(store, idle_from))
    except Exception as exc:  # a breaking run still yields what it measured
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        out["stop"] = _stop_up(process, settings)
    return out


def run(
    base: Path, *, tenant_counts: Sequence[int], max_memories: int, new_rows: int, seed: int
) -> SectionResult:
    """Run benchmark G for each tenant count and return its figures."""
    result = SectionResult("tenants")
    for count in tenant_counts:
        progress(f"tenants: {count} tenants, 1-{max_memories} notes each")
        got = measure(base, count, max_memories, new_rows, seed)
        result.details[str(count)] = got
        label = f"{count:,} tenants"
        backlog = got.get("backlog", {})
        result.add(f"{label}: import → all embedded", backlog.get("seconds"), "s")
        for name, key in (("backlog", "ticks_backlog"), ("idle", "ticks_idle")):
            ticks = got.get(key, {})
            p95 = ticks.get("p95_ms")
            result.add(
                f"{label}: sensor tick p95, {name}",
                None if p95 is None else p95 / 1000,
                "s",
                at_most=IDLE_TICK_P95_S if name == "idle" else None,
            )
        for name in ("search_cold", "search_warm"):
            result.add(
                f"{label}: {name.replace('_', ' ')} p50", got.get(name, {}).get("p50_ms"), "ms"
            )
        result.add(f"{label}: status --json", got.get("status_json_s"), "s")
        result.add(f"{label}: drift check, every tenant", got.get("drift_check_s"), "s")
        result.add(f"{label}: Chroma collections", got.get("chroma_collections"), "")
        result.add(f"{label}: Chroma disk", got.get("chroma_disk_mb"), "MB")
        p95 = got.get("new_row", {}).get("p95_ms")
        result.add(
            f"{label}: new row → searchable p95",
            None if p95 is None else p95 / 1000,
            "s",
            at_most=NEW_ROW_P95_S,
        )
        if got.get("error"):
            result.error = got["error"]
    return result
