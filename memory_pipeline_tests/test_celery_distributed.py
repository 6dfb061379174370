"""The scale-out path, run for real: Dagster's Celery executor over a Redis broker.

The module starts its own broker (``redis-server`` on a Unix socket), two Celery step workers
with their own environment and home (Postgres, Chroma and Dagster's storage reached by URL
only, as separate machines would), and a Dagster host (``dagster-daemon``: the pending-rows
sensor, the run queue) with ``MEMORY_PIPELINE_EXECUTOR=celery``: the same definitions as
``up``, another engine by configuration. Its data lives in a database of its own on the
session's PostgreSQL server, so the sensor sees only this module's rows. Every process it
started is ended by pid at the end.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterRunStatus, RunsFilter

from memory_pipeline.defs.assets import TENANT_VECTORS_ASSET
from memory_pipeline.defs.sensors import SENSOR_TAG
from memory_pipeline.local_services import ServiceEndpoints
from memory_pipeline.storage.memory_writes import copy_pending_rows
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, connect_chroma
from memory_pipeline_bench.celery_cluster import (
    CeleryCluster,
    celery_cluster,
    redis_server_path,
    rows_by_worker,
    step_records,
    wait_for,
)
from memory_pipeline_bench.synthetic import work_logs
from memory_pipeline_tests.celery_fault import STALL_MARKER_ENV, STALL_USER_ENV

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(1200)]

WORKERS = ("embed1", "embed2")
SPREAD_TENANTS = 12
ROWS_PER_TENANT = 10
#: two tenants per run: 12 tenants become 6 runs, each one step on some worker
ROWS_PER_RUN = 2 * ROWS_PER_TENANT
#: a vanished worker's step goes back to the queue after this; above any step's duration here
VISIBILITY_TIMEOUT_SECONDS = 45
WORKERS_READY_TIMEOUT = 300.0
BACKLOG_TIMEOUT = 300.0
PROJECT = "celery"


def _database_url_of(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def isolated_endpoints(endpoints: ServiceEndpoints) -> Iterator[ServiceEndpoints]:
    """The session's servers, with a database of this module's own."""
    name = f"mp_celery_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = _database_url_of(endpoints.database_url, name)
    apply_migrations(url)
    yield ServiceEndpoints(
        url, endpoints.chroma_host, endpoints.chroma_port, endpoints.chroma_token
    )
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def folder() -> Path:
    return Path(f"/tmp/mpc-{uuid.uuid4().hex[:8]}")  # short: Unix socket paths are limited


@pytest.fixture(scope="module")
def stall_user() -> str:
    """The user whose first step stalls in its worker (see ``celery_fault``)."""
    return f"stall-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cluster(
    isolated_endpoints: ServiceEndpoints, folder: Path, stall_user: str
) -> Iterator[CeleryCluster]:
    redis_server_path()  # a clear error when the broker is not installed
    settings_env = {
        "MEMORY_PIPELINE_MAX_ROWS_PER_RUN": str(ROWS_PER_RUN),
        "MEMORY_PIPELINE_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_SECONDS),
        "MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS": "0",
    }
    stall = {STALL_USER_ENV: stall_user, STALL_MARKER_ENV: str(folder / "stalled.pid")}
    with celery_cluster(folder, isolated_endpoints, settings_env) as started:
        for name in WORKERS:
            started.start_worker(name, stall, include=["memory_pipeline_tests.celery_fault"])
        started.start_daemon()
        started.wait_for_workers(WORKERS_READY_TIMEOUT)
        yield started
    assert not started.survivors(), "a process of the cluster is still running"


def _insert(url: str, tenants: list[Tenant], rows_per_tenant: int) -> None:
    docs = work_logs(len(tenants) * rows_per_tenant, seed=7)
    with psycopg.connect(url) as conn:
        copy_pending_rows(conn, ((tenants[i % len(tenants)], d, None) for i, d in enumerate(docs)))


def _statuses(url: str, tenants: list[Tenant]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM memory_log WHERE tenant_key = ANY(%s) GROUP BY status",
            ([t.key for t in tenants],),
        ).fetchall()
    return {status: count for status, count in rows}


def _wait_until_embedded(url: str, tenants: list[Tenant], rows: int, timeout: float) -> None:
    wait_for(
        lambda: _statuses(url, tenants).get("embedded") == rows,
        timeout,
        f"{rows} rows of {len(tenants)} tenant(s) embedded",
        interval=1.0,
    )


def _finished_runs(cluster: CeleryCluster, known: set[str], timeout: float) -> list:
    """The sensor's runs not in ``known``, once none of them is queued or running."""
    active = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
    ]
    with cluster.instance() as instance:

        def settled() -> list | None:
            runs = [
                r
                for r in instance.get_runs(
                    filters=RunsFilter(tags={SENSOR_TAG: "pending_rows_sensor"})
                )
                if r.run_id not in known
            ]
            if runs and not [r for r in runs if r.status in active]:
                return runs
            return None

        return wait_for(settled, timeout, "the sensor's runs finishing", interval=1.0)


def _assert_stores_agree(url: str, store: ChromaVectorStore, tenants: list[Tenant]) -> None:
    """Per tenant: Postgres's vector ids are Chroma's, and no memory has more than its chunks."""
    with psycopg.connect(url) as conn:
        for tenant in tenants:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT vector_id FROM memory_vector WHERE tenant_key = %s", (tenant.key,)
                )
            ]
            chunks = conn.execute(
                "SELECT coalesce(sum(chunk_count), 0) FROM memory_log WHERE tenant_key = %s",
                (tenant.key,),
            ).fetchone()[0]
            assert len(ids) == len(set(ids)) == chunks, f"tenant {tenant}: duplicate vectors"
            assert store.vector_ids(tenant) == set(ids), f"tenant {tenant}: stores disagree"


@pytest.fixture(scope="module")
def chroma(isolated_endpoints: ServiceEndpoints) -> ChromaVectorStore:
    eps = isolated_endpoints
    return ChromaVectorStore(connect_chroma(eps.chroma_host, eps.chroma_port, eps.chroma_token))


def test_a_backlog_of_many_tenants_is_embedded_once_and_spread_over_the_workers(
    cluster: CeleryCluster, chroma: ChromaVectorStore
):
    url = cluster.endpoints.database_url
    suffix = uuid.uuid4().hex[:6]
    tenants = [Tenant(f"spread{i:02d}-{suffix}", PROJECT) for i in range(SPREAD_TENANTS)]
    rows = SPREAD_TENANTS * ROWS_PER_TENANT
    _insert(url, tenants, ROWS_PER_TENANT)

    _wait_until_embedded(url, tenants, rows, BACKLOG_TIMEOUT)
    runs = _finished_runs(cluster, set(), BACKLOG_TIMEOUT)

    assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    with cluster.instance() as instance:
        records = step_records(instance, [r.run_id for r in runs], TENANT_VECTORS_ASSET)
    per_worker = rows_by_worker(records)
    print(f"\n{len(runs)} runs; rows per worker: {per_worker}")
    assert sum(r.embedded for r in records) == rows  # every row embedded by exactly one step
    assert set(per_worker) == {cluster.workers[n].hostname for n in WORKERS}
    assert all(count > 0 for count in per_worker.values())
    _assert_stores_agree(url, chroma, tenants)


def test_a_worker_killed_mid_step_has_its_rows_finished_by_another(
    cluster: CeleryCluster, chroma: ChromaVectorStore, folder: Path, stall_user: str
):
    url = cluster.endpoints.database_url
    with cluster.instance() as instance:
        before = {r.run_id for r in instance.get_runs()}
    tenant = Tenant(stall_user, PROJECT)
    _insert(url, [tenant], ROWS_PER_TENANT)

    marker = folder / "stalled.pid"
    wait_for(lambda: marker.exists() and marker.read_text(), BACKLOG_TIMEOUT, "a worker stalling")
    pid = int(marker.read_text())
    victim = next(n for n, w in cluster.workers.items() if w.process.pid == pid)
    # mid-step: its vectors are in Chroma, its rows claimed in a transaction not committed
    assert _statuses(url, [tenant]) == {"pending": ROWS_PER_TENANT}
    assert len(chroma.vector_ids(tenant)) >= ROWS_PER_TENANT
    cluster.kill_worker(victim)
    killed_at = time.monotonic()

    _wait_until_embedded(url, [tenant], ROWS_PER_TENANT, BACKLOG_TIMEOUT)
    runs = _finished_runs(cluster, before, BACKLOG_TIMEOUT)
    print(f"\nrows finished {time.monotonic() - killed_at:.0f} s after the kill")

    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS]
    with cluster.instance() as instance:
        (record,) = step_records(instance, [runs[0].run_id], TENANT_VECTORS_ASSET)
    survivor = next(n for n in WORKERS if n != victim)
    assert record.attempts_by_worker == [
        cluster.workers[victim].hostname,
        cluster.workers[survivor].hostname,
    ]
    assert record.embedded == ROWS_PER_TENANT
    _assert_stores_agree(url, chroma, [tenant])
