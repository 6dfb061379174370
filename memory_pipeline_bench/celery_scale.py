"""Benchmark F (issue 19): the same backlog embedded by 1 and by 2 Celery step workers.

On its own home (PostgreSQL, Chroma), a broker, step workers and a Dagster daemon run as in
``celery_cluster`` (``MEMORY_PIPELINE_EXECUTOR=celery``; the sensor cuts the backlog into runs of
``rows_per_run`` rows, one step each). Each phase inserts the same texts for fresh tenants in one
COPY and times it until every row is embedded, with 1 or 2 workers, in the order 1, 2, 2, 1 so a
drift of the machine's speed hits both alike. Then the per-run overhead: single-row runs, one at
a time, under the Celery executor and under the in-process one (the daemon restarted with
``MEMORY_PIPELINE_EXECUTOR`` set, blocks in the order Celery, in-process, in-process, Celery),
each timed from its run's start to its end as Dagster records them. An in-process run loads the
model in its own process (its log says how long); a Celery worker has it loaded already, so
the run is also reported without that load.

Every worker's model uses every core: on a 2-core machine two workers share the same cores, so
the 2-worker / 1-worker ratio shows the overhead of spreading, not a speed-up.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
from dagster import RunsFilter

from memory_pipeline.defs.assets import TENANT_VECTORS_ASSET
from memory_pipeline.defs.sensors import SENSOR_TAG
from memory_pipeline.local_services import ensure_services
from memory_pipeline.storage.memory_writes import copy_pending_rows
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.celery_cluster import (
    CeleryCluster,
    celery_cluster,
    rows_by_worker,
    step_records,
    wait_for,
)
from memory_pipeline_bench.homes import fresh_section_home, section_settings, stop_section_services
from memory_pipeline_bench.results import SectionResult, progress
from memory_pipeline_bench.synthetic import work_logs

PROJECT = "bench-celery"
PHASE_TIMEOUT = 1800.0
READY_TIMEOUT = 600.0
#: the order of the throughput phases (workers per phase): 1, 2, 2, 1 cancels a linear drift
PHASE_WORKERS = (1, 2, 2, 1)
#: the same for the blocks of single-row runs (the daemon restarts with the executor)
OVERHEAD_ORDER = ("celery", "in_process", "in_process", "celery")


def _statuses(url: str, keys: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM memory_log WHERE tenant_key = ANY(%s) GROUP BY status",
            (keys,),
        ).fetchall()
    return {status: count for status, count in rows}


def _sensor_runs(cluster: CeleryCluster) -> list[Any]:
    """The pending-rows sensor's runs (not, e.g., the tenant directory's automation runs)."""
    with cluster.instance() as instance:
        return list(instance.get_runs(filters=RunsFilter(tags={SENSOR_TAG: "pending_rows_sensor"})))


def _new_runs(cluster: CeleryCluster, known: set[str]) -> list[Any]:
    return [r for r in _sensor_runs(cluster) if r.run_id not in known]


def _run_ids(cluster: CeleryCluster) -> set[str]:
    return {r.run_id for r in _sensor_runs(cluster)}


def _settled(cluster: CeleryCluster, known: set[str]) -> list[Any] | None:
    runs = _new_runs(cluster, known)
    return runs if runs and all(r.is_finished for r in runs) else None


def _backlog_phase(
    cluster: CeleryCluster, label: str, tenants: int, rows_per_tenant: int, seed: int
) -> dict[str, Any]:
    """Insert one backlog for fresh tenants; time it until every row is embedded."""
    url = cluster.endpoints.database_url
    group = [Tenant(f"{label}-t{i:03d}", PROJECT) for i in range(tenants)]
    keys = [t.key for t in group]
    rows = tenants * rows_per_tenant
    known = _run_ids(cluster)
    docs = list(work_logs(rows, seed=seed))
    with psycopg.connect(url) as conn:
        copy_pending_rows(conn, ((group[i % tenants], d, None) for i, d in enumerate(docs)))
    start = time.monotonic()
    wait_for(
        lambda: _statuses(url, keys).get("embedded", 0) == rows,
        PHASE_TIMEOUT,
        f"{label}: {rows} rows embedded",
        interval=0.5,
    )
    embedded_s = time.monotonic() - start
    runs = wait_for(lambda: _settled(cluster, known), PHASE_TIMEOUT, f"{label}: runs finishing")
    with cluster.instance() as instance:
        records = step_records(instance, [r.run_id for r in runs], TENANT_VECTORS_ASSET)
    return {
        "rows": rows,
        "load_average_at_end": os.getloadavg(),
        "seconds": embedded_s,
        "rows_per_s": rows / embedded_s,
        "runs": len(runs),
        "failed_runs": sum(1 for r in runs if not r.is_success),
        "rows_per_worker": rows_by_worker(records),
    }


MODEL_READY = re.compile(r"embedding model \S+ ready in ([0-9.]+) s")


def _model_load_seconds(instance: Any, run_id: str) -> float:
    """What the run's log says loading the model took (0.0 in a warm Celery worker)."""
    for entry in instance.all_logs(run_id):
        found = MODEL_READY.search(entry.user_message or "")
        if found:
            return float(found.group(1))
    return float("nan")


def _run_durations(cluster: CeleryCluster, label: str, count: int) -> list[dict[str, float]]:
    """``count`` single-row runs one after another: Dagster's start-to-end of each."""
    url = cluster.endpoints.database_url
    out: list[dict[str, float]] = []
    for index in range(count):
        tenant = Tenant(f"{label}-one{index:02d}", PROJECT)
        known = _run_ids(cluster)
        with psycopg.connect(url) as conn:
            copy_pending_rows(conn, [(tenant, next(work_logs(1, seed=index)), None)])
        inserted = time.monotonic()
        wait_for(
            lambda t=tenant: _statuses(url, [t.key]).get("embedded") == 1,
            PHASE_TIMEOUT,
            f"{label}: row {index} embedded",
            interval=0.25,
        )
        embedded = time.monotonic() - inserted
        (run,) = wait_for(lambda k=known: _settled(cluster, k), PHASE_TIMEOUT, f"{label} run")
        with cluster.instance() as instance:
            stats = instance.get_run_stats(run.run_id)
            record = instance.get_run_record_by_id(run.run_id)
            model_load = _model_load_seconds(instance, run.run_id)
        run_s = stats.end_time - stats.start_time
        out.append(
            {
                "run_s": run_s,
                "model_load_s": model_load,
                "run_without_model_load_s": run_s - model_load,
                "launch_s": stats.start_time - record.create_timestamp.timestamp(),
                "insert_to_embedded_s": embedded,
                "load_average": os.getloadavg()[0],
            }
        )
    return out


def run(
    base: Path,
    *,
    tenants: int = 24,
    rows_per_tenant: int = 50,
    rows_per_run: int = 200,
    overhead_runs: int = 3,
    seed: int = 0,
) -> SectionResult:
    result = SectionResult("celery")
    home = fresh_section_home(base, "celery")
    settings = section_settings(home)
    endpoints = ensure_services(settings)
    apply_migrations(endpoints.database_url)
    settings_env = {
        "MEMORY_PIPELINE_MAX_ROWS_PER_RUN": str(rows_per_run),
        # above any step here, so no step runs twice because it is slow
        "MEMORY_PIPELINE_CELERY_VISIBILITY_TIMEOUT": "600",
    }
    phases: list[dict[str, Any]] = []
    try:
        with celery_cluster(
            Path(f"/tmp/mpb-{home.name}-{int(time.time())}"), endpoints, settings_env
        ) as cluster:
            cluster.start_worker("embed1")
            cluster.start_daemon()
            cluster.wait_for_workers(READY_TIMEOUT)
            for number, workers in enumerate(PHASE_WORKERS):
                if workers == 2 and "embed2" not in cluster.workers:
                    cluster.start_worker("embed2")
                    cluster.wait_for_workers(READY_TIMEOUT)
                if workers == 1 and "embed2" in cluster.workers:
                    cluster.stop_worker("embed2")
                label = f"p{number}w{workers}"
                progress(
                    f"celery: phase {label}: {tenants * rows_per_tenant} rows, {workers} worker(s)"
                )
                phase = _backlog_phase(cluster, label, tenants, rows_per_tenant, seed)
                phase["workers"] = workers
                progress(
                    f"celery: {label}: {phase['rows_per_s']:.1f} rows/s, {phase['rows_per_worker']}"
                )
                phases.append(phase)
            if "embed2" in cluster.workers:
                cluster.stop_worker("embed2")
            celery_runs, inproc_runs = [], []
            for block, executor in enumerate(OVERHEAD_ORDER):
                progress(f"celery: per-run overhead, {executor} executor, block {block}")
                cluster.stop_daemon()
                cluster.start_daemon({"MEMORY_PIPELINE_EXECUTOR": executor})
                runs = _run_durations(cluster, f"o{block}{executor[0]}", overhead_runs)
                (celery_runs if executor == "celery" else inproc_runs).extend(runs)
    finally:
        stop_section_services(home)

    one = [p["rows_per_s"] for p in phases if p["workers"] == 1]
    two = [p["rows_per_s"] for p in phases if p["workers"] == 2]
    rate1, rate2 = statistics.fmean(one), statistics.fmean(two)
    result.add("1 worker: backlog rows/s", rate1, "rows/s")
    result.add("2 workers: backlog rows/s", rate2, "rows/s")
    result.add("2 workers / 1 worker", rate2 / rate1, "ratio")
    celery_run = statistics.median(r["run_s"] for r in celery_runs)
    inproc_run = statistics.median(r["run_s"] for r in inproc_runs)
    inproc_bare = statistics.median(r["run_without_model_load_s"] for r in inproc_runs)
    result.add("single-row run, Celery executor (p50)", celery_run, "s")
    result.add("single-row run, in-process executor (p50)", inproc_run, "s")
    result.add("... in-process without its model load (p50)", inproc_bare, "s")
    result.add("Celery - in-process per run", celery_run - inproc_run, "s")
    result.add("Celery - in-process without model load", celery_run - inproc_bare, "s")
    result.details.update(
        {
            "phases": phases,
            "celery_runs": celery_runs,
            "in_process_runs": inproc_runs,
            "tenants": tenants,
            "rows_per_tenant": rows_per_tenant,
            "rows_per_run": rows_per_run,
            "note": "every worker's model uses every core: on 2 cores the ratio shows the "
            "overhead of spreading, not a speed-up",
        }
    )
    return result
