"""Benchmark G (issue 28): many small tenants under ``memory-pipeline up``, as an operator loads
them.

For each tenant count, in a fresh home: synthetic tenants with ``1..max_memories`` short notes
each are written to a JSONL file and loaded with ``memory-pipeline import``; the clock runs until
every row is embedded. Then, from the daemon's tick records, the pending-rows sensor's tick
durations during the backlog and idle afterwards; Dagster runs; search p50/p95 on tenants never
searched (cold) and on one tenant again and again (warm); ``status --json`` and ``tenants``
wall time; the Dagster UI in headless Chromium (the asset's partitions page and one partition's
page, from navigation to the first row or the partition's metadata shown, and whether the
partition filter finds the partition ``tenants --user`` named); the drift check over every
tenant; Chroma's disk, collections and RSS; and rows inserted one at a time into random tenants,
each timed until a search finds it.

An existing home (``existing_homes``, e.g. one a long run left) is measured as it is, from the
searches on, without a new import. Every tenant count is compared with the run's smallest: search
p50 at most 1.5 times its figure (issue 28's target at 100k against 1,000 tenants).
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
from urllib.parse import quote

import psutil

from memory_pipeline import MemoryStore
from memory_pipeline.consistency import compare_tenants
from memory_pipeline.defs.assets import TENANT_VECTORS_ASSET
from memory_pipeline.local_services import ensure_services
from memory_pipeline.storage import tenant_status
from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.browser import launch_chromium, local_context
from memory_pipeline_bench.homes import fresh_section_home, section_settings
from memory_pipeline_bench.results import SectionResult, latency_summary, progress
from memory_pipeline_bench.scale import _free_port, _start_up, _stop_up, _wait_until_ready

SENSOR = "pending_rows_sensor"
PROJECT = "bench-tenants"
IDLE_SECONDS = 60.0
COLD_SEARCHES, WARM_SEARCHES = 30, 100
NEW_ROW_TIMEOUT = 300.0
#: How long searches wait for runs in progress (a drift check caught up on start) to end.
QUIET_TIMEOUT = 900.0
ACTIVE_RUN_STATES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
UI_LOADS, UI_TIMEOUT_S = 5, 120.0
#: Issue 28's targets at 100k tenants (2 cores); search p50 is against the run's smallest count.
IDLE_TICK_P95_S, NEW_ROW_P95_S, UI_PAGE_P95_S, SEARCH_P50_RATIO = 2.0, 30.0, 5.0, 1.5
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


def _wait_for_no_runs(store: MemoryStore) -> float:
    """Seconds waited until no Dagster run is in progress: search is timed on a quiet home, not
    beside a check the daemon caught up on start (a drift check of 100k tenants takes minutes
    of both cores)."""
    start = time.monotonic()
    while time.monotonic() - start < QUIET_TIMEOUT:
        with store.db.connection() as conn:
            active = conn.execute(
                "SELECT count(*) AS n FROM dagster.runs WHERE status = ANY(%s)",
                (list(ACTIVE_RUN_STATES),),
            ).fetchone()["n"]
        if not active:
            break
        time.sleep(2)
    return time.monotonic() - start


def _timed_searches(store: MemoryStore, tenants: Sequence[Tenant]) -> list[float]:
    times = []
    for tenant in tenants:
        start = time.perf_counter()
        store.search_similar_memories("harbour lantern", tenant.user_id, tenant.project_id)
        times.append(time.perf_counter() - start)
    return times


def _wall(args: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=900)
    return time.monotonic() - start, done.stdout


def _new_rows(
    store: MemoryStore, tenants: Sequence[Tenant], count: int, rng: random.Random
) -> list[float]:
    latencies = []
    for i in range(count):
        tenant, text = rng.choice(tenants), f"fresh memo {i}: {note(rng)}"
        log_id = store.create_memory_log(tenant.user_id, tenant.project_id, {"content": text})
        start = time.monotonic()
        while time.monotonic() - start < NEW_ROW_TIMEOUT:
            row = store.get_memory_log(log_id)
            hits = (
                store.search_similar_memories(text, tenant.user_id, tenant.project_id)
                if row
                else []
            )
            if row and row["status"] == "embedded" and any(h.log_id == log_id for h in hits):
                break
            time.sleep(0.2)
        latencies.append(time.monotonic() - start)
    return latencies


def partitions_url(base_url: str, partition: str | None = None) -> str:
    """The memory asset's partitions page in the Dagster UI, or one partition's page."""
    url = f"{base_url}/assets/{TENANT_VECTORS_ASSET}?view=partitions"
    return url if partition is None else f"{url}&partition={quote(partition, safe='')}"


def ui_times(base_url: str, first: str, wanted: str, loads: int = UI_LOADS) -> dict[str, Any]:
    """The Dagster UI in headless Chromium, ``loads`` times in a fresh context (empty cache):
    seconds from navigation to the partitions page's first row (partition ``first``) visible;
    whether its filter, given the key ``wanted``, shows that row alone (and how long it took);
    seconds from navigation to ``wanted``'s own page showing its metadata."""
    from playwright.sync_api import TimeoutError as PageTimeout
    from playwright.sync_api import sync_playwright

    page_s, filter_s, partition_s, found = [], [], [], []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for _ in range(loads):
                context = local_context(browser, UI_TIMEOUT_S)
                try:
                    page = context.new_page()
                    start = time.monotonic()
                    page.goto(partitions_url(base_url))
                    page.get_by_title(first, exact=True).first.wait_for()
                    page_s.append(time.monotonic() - start)

                    start = time.monotonic()
                    page.get_by_placeholder("Filter by name…").fill(wanted)
                    try:
                        page.get_by_title(wanted, exact=True).first.wait_for()
                        if first != wanted:
                            page.get_by_title(first, exact=True).first.wait_for(state="hidden")
                        found.append(True)
                        filter_s.append(time.monotonic() - start)
                    except PageTimeout:
                        found.append(False)

                    start = time.monotonic()
                    page.goto(partitions_url(base_url, wanted))
                    page.get_by_text("total_embedded", exact=True).first.wait_for()
                    partition_s.append(time.monotonic() - start)
                finally:
                    context.close()
        finally:
            browser.close()
    return {
        "first_partition": first,
        "looked_up_partition": wanted,
        "partitions_page": latency_summary(page_s),
        "partitions_page_s": page_s,
        "filter_found": all(found) and len(found) == loads,
        "filter": latency_summary(filter_s),
        "partition_page": latency_summary(partition_s),
        "partition_page_s": partition_s,
    }


def looked_up_partition(printed: str, tenant: Tenant) -> str:
    """The partition ``tenants --user U --json`` names for ``tenant``."""
    for entry in json.loads(printed or "[]"):
        if entry["project_id"] == tenant.project_id:
            return str(entry["partition"])
    raise LookupError(
        f"`tenants --user {tenant.user_id}` does not list project {tenant.project_id}"
    )


def _after_backlog(
    store: MemoryStore,
    env: dict[str, str],
    base_url: str,
    out: dict[str, Any],
    new_rows: int,
    seed: int,
) -> None:
    """The figures of a home whose rows are all embedded, into ``out``; each step records its
    failure and the next goes on."""
    settings = store.settings
    idle_from = time.time()
    time.sleep(IDLE_SECONDS)  # the idle sensor is what is measured here
    out["ticks_idle"] = tick_summary(sensor_ticks(store, idle_from))
    with store.db.connection() as conn:
        runs = conn.execute("SELECT status, count(*) AS n FROM dagster.runs GROUP BY 1").fetchall()
        out["runs"] = {r["status"]: int(r["n"]) for r in runs}
        first = conn.execute(
            "SELECT partition, count(*) OVER () AS n FROM dagster.dynamic_partitions "
            "WHERE partitions_def_name = 'tenants' ORDER BY id LIMIT 1"
        ).fetchone()
        out["partitions"] = first["n"] if first else 0
        out["shards"] = conn.execute("SELECT shards FROM tenant_layout").fetchone()["shards"]
        everyone = tenant_status.all_tenants(conn)
    out["tenants"] = len(everyone)
    rng = random.Random(seed + 1)
    picks = rng.sample(everyone, COLD_SEARCHES + 1)
    out["waited_for_runs_s"] = _wait_for_no_runs(store)
    out["search_cold"] = latency_summary(_timed_searches(store, picks[:-1]))
    out["search_warm"] = latency_summary(_timed_searches(store, [picks[-1]] * WARM_SEARCHES))
    out["status_json_s"], printed = _wall(["status", "--json"], env)
    out["status_json_bytes"] = len(printed)
    out["tenants_lookup_s"], printed = _wall(["tenants", "--user", picks[0].user_id, "--json"], env)
    try:
        wanted = looked_up_partition(printed, picks[0])
        out["ui"] = ui_times(base_url, first["partition"], wanted)
    except Exception as exc:  # no browser, a page that never shows: the rest still counts
        out["ui"] = {"error": f"{type(exc).__name__}: {exc}"}
    start = time.monotonic()
    drift = compare_tenants(store.db, store.vector_store, everyone, store.embedder.model_id)
    out["drift_check_s"] = time.monotonic() - start
    out["drift_out_of_sync"] = sum(not d.in_sync for d in drift.values())
    out["chroma_collections"] = store.vector_store.client.count_collections()
    du = subprocess.run(["du", "-sm", str(settings.chroma_data_dir)], capture_output=True)
    out["chroma_disk_mb"] = int(du.stdout.split()[0])
    out["new_row"] = latency_summary(_new_rows(store, everyone, new_rows, rng))
    out["ticks_with_new_rows"] = tick_summary(sensor_ticks(store, idle_from))


def measure_up(home: Path, import_path: Path | None, new_rows: int, seed: int) -> dict[str, Any]:
    """Every figure of one home under ``memory-pipeline up``: after importing ``import_path``
    and timing its backlog, or, without one, of the home as it is. A step that fails records
    its error; what was measured before it is kept."""
    out: dict[str, Any] = {"home": str(home), "imported": import_path is not None}
    settings = section_settings(home)
    env = {**os.environ, "MEMORY_PIPELINE_HOME": str(home)}
    port = _free_port()
    process = _start_up(settings, port)
    try:
        out["up_ready_s"] = _wait_until_ready(process, settings)
        imported_at = time.time()
        if import_path is not None:
            out["import_s"], printed = _wall(["import", str(import_path), "--json"], env)
            out["import"] = json.loads(printed or "{}")
        with MemoryStore(settings, ensure_services(settings)) as store:
            deadline = max(1800.0, sum(_rows_by_status(store).values()) / 10)
            out["backlog"] = _until_embedded(store, process.pid, deadline)
            if import_path is not None:
                out["ticks_backlog"] = tick_summary(sensor_ticks(store, imported_at))
            _after_backlog(store, env, f"http://127.0.0.1:{port}", out, new_rows, seed)
    except Exception as exc:  # a breaking run still yields what it measured
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        out["stop"] = _stop_up(process, settings)
    return out


def measure(base: Path, tenants: int, max_memories: int, new_rows: int, seed: int) -> dict:
    """Every figure of ``tenants`` fresh tenants imported into a fresh home."""
    home = fresh_section_home(base, f"tenants-{tenants}")
    path = home / "import.jsonl"
    rows = write_import_file(path, tenants, max_memories, seed)
    return {"tenants": tenants, "rows": rows, **measure_up(home, path, new_rows, seed)}


def _add_home(result: SectionResult, label: str, got: dict[str, Any]) -> None:
    if got.get("imported"):
        result.add(f"{label}: import → all embedded", got.get("backlog", {}).get("seconds"), "s")
    for name, key in (("backlog", "ticks_backlog"), ("idle", "ticks_idle")):
        if key not in got and name == "backlog":
            continue
        p95 = got.get(key, {}).get("p95_ms")
        result.add(
            f"{label}: sensor tick p95, {name}",
            None if p95 is None else p95 / 1000,
            "s",
            at_most=IDLE_TICK_P95_S if name == "idle" else None,
        )
    for name in ("search_cold", "search_warm"):
        for q in ("p50", "p95"):
            result.add(
                f"{label}: {name.replace('_', ' ')} {q}", got.get(name, {}).get(f"{q}_ms"), "ms"
            )
    result.add(f"{label}: status --json", got.get("status_json_s"), "s")
    result.add(f"{label}: tenants --user (CLI process)", got.get("tenants_lookup_s"), "s")
    ui = got.get("ui", {})
    for name, key in (
        ("partitions page", "partitions_page"),
        ("a partition's page", "partition_page"),
    ):
        p95 = ui.get(key, {}).get("p95_ms")
        result.add(
            f"{label}: UI {name}, navigation → shown p95",
            None if p95 is None else p95 / 1000,
            "s",
            at_most=UI_PAGE_P95_S,
        )
    found = ui.get("filter_found")
    result.add(
        f"{label}: UI partition filter finds the partition `tenants --user` names",
        None if found is None else float(found),
        "yes=1",
        at_least=1.0,
    )
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


def search_ratios(homes: dict[str, dict[str, Any]]) -> list[tuple[str, float | None]]:
    """Each home's search p50 (cold, warm) over that of the home with fewest tenants, as
    ``(name, ratio)``; nothing when fewer than two homes have tenants."""
    sized = {k: h for k, h in homes.items() if h.get("tenants")}
    if len(sized) < 2:
        return []
    least_key = min(sized, key=lambda k: sized[k]["tenants"])
    least = sized[least_key]
    ratios = []
    for key, home in sized.items():
        if key == least_key:
            continue
        for name in ("search_cold", "search_warm"):
            top, bottom = home.get(name, {}).get("p50_ms"), least.get(name, {}).get("p50_ms")
            ratio = top / bottom if top is not None and bottom else None
            ratios.append(
                (
                    f"{name.replace('_', ' ')} p50, {home['tenants']:,} / "
                    f"{least['tenants']:,} tenants",
                    ratio,
                )
            )
    return ratios


def run(
    base: Path,
    *,
    tenant_counts: Sequence[int],
    max_memories: int,
    new_rows: int,
    seed: int,
    existing_homes: Sequence[Path] = (),
) -> SectionResult:
    """Run benchmark G for each tenant count (fresh homes) and each existing home, and compare
    their search p50 with the smallest's."""
    result = SectionResult("tenants")
    for count in tenant_counts:
        progress(f"tenants: {count} tenants, 1-{max_memories} notes each")
        result.details[str(count)] = measure(base, count, max_memories, new_rows, seed)
    for home in existing_homes:
        progress(f"tenants: the existing home {home}, as it is")
        result.details[str(home)] = measure_up(home, None, new_rows, seed)
    for got in result.details.values():
        tenants = got.get("tenants")
        label = f"{tenants:,} tenants" if tenants else Path(got["home"]).name
        _add_home(result, label if got.get("imported") else f"{label} (existing home)", got)
        if got.get("error"):
            result.error = got["error"]
    for name, ratio in search_ratios(result.details):
        result.add(name, ratio, "ratio", at_most=SEARCH_P50_RATIO)
    return result
