"""The home's Dagster instance: its ``dagster.yaml``, opening it, and its administration.

The instance keeps its storage in the app database (schema ``dagster``) through
dagster-postgres. ``dagster.yaml`` names the storage URL by an environment variable that ``up``
hands to ``dagster dev``, so no password is written to disk; a process that opens the instance
itself (``up``, ``purge``) passes the URL as an override instead, leaving its environment alone.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME
from memory_pipeline.local_services.endpoints import ServiceEndpoints
from memory_pipeline.settings import Settings

logger = logging.getLogger(__name__)

DAGSTER_SCHEMA = "dagster"
STORAGE_URL_ENV = "MEMORY_PIPELINE_DAGSTER_STORAGE_URL"

#: Run monitoring fails runs stuck starting or canceling. Dagster's run retries stay off: the
#: sensor requests unfinished work again itself, with backoff (decision 0100).
DAGSTER_YAML = f"""\
# Written by `memory-pipeline up`. Instance storage lives in the app database (schema dagster).
storage:
  postgres:
    postgres_url:
      env: {STORAGE_URL_ENV}
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    dequeue_interval_seconds: 1
    # One run per tenant at a time: an optimisation only, correctness rests on row claiming.
    tag_concurrency_limits:
      - key: "dagster/partition"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
run_retries:
  enabled: false
telemetry:
  enabled: false
"""

#: Runs that hold a worker (or are about to): none survives the end of the `up` that ran it.
WORKER_STATUSES = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def dagster_storage_url(database_url: str) -> str:
    """The SQLAlchemy URL (psycopg2 driver) for Dagster's tables in schema ``dagster``."""
    parts = urllib.parse.urlsplit(database_url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "options"]
    query.append(("options", f"-csearch_path={DAGSTER_SCHEMA}"))
    return urllib.parse.urlunsplit(
        ("postgresql+psycopg2", parts.netloc, parts.path, urllib.parse.urlencode(query), "")
    )


def prepare_dagster_home(settings: Settings, endpoints: ServiceEndpoints) -> Path:
    """Create DAGSTER_HOME with its dagster.yaml and the ``dagster`` schema; return the home."""
    home = settings.resolved_dagster_home
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DAGSTER_SCHEMA}")
    return home


@contextmanager
def home_instance(settings: Settings, endpoints: ServiceEndpoints) -> Iterator[DagsterInstance]:
    """The home's Dagster instance, its storage URL given as an override (no environment)."""
    home = settings.resolved_dagster_home
    overrides = {
        "storage": {"postgres": {"postgres_url": dagster_storage_url(endpoints.database_url)}}
    }
    # local_temp is Dagster's public way to open an instance of a given folder with overrides:
    # it reads that folder's dagster.yaml and keeps what it stores there
    with DagsterInstance.local_temp(str(home), overrides=overrides) as instance:
        yield instance


def fail_orphaned_runs(instance: DagsterInstance, reason: str) -> list[str]:
    """Mark failed (or canceled) the runs that hold a worker; return their ids.

    Only for the one process that owns every run worker of the instance (``up``, before it
    starts ``dagster dev``): a run left ``STARTED`` by a worker that died with the previous
    ``up`` would hold its tenants forever, as the sensor leaves tenants of active runs alone.
    """
    failed: list[str] = []
    for run in instance.get_runs(filters=RunsFilter(statuses=WORKER_STATUSES)):
        if run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message=reason)
        else:
            instance.report_run_failed(run, message=reason)
        failed.append(run.run_id)
    if failed:
        logger.warning("%d run(s) without a worker marked failed: %s", len(failed), reason)
    return failed


def delete_tenant_partition(
    settings: Settings, endpoints: ServiceEndpoints, partition_key: str
) -> bool:
    """Remove a tenant's dynamic partition from the home's Dagster instance, if there is one."""
    if not (settings.resolved_dagster_home / "dagster.yaml").exists():
        return False
    with home_instance(settings, endpoints) as instance:
        if not instance.has_dynamic_partition(TENANT_PARTITIONS_NAME, partition_key):
            return False
        instance.delete_dynamic_partition(TENANT_PARTITIONS_NAME, partition_key)
        return True


def fail_runs_whose_worker_exited(instance: DagsterInstance, reason: str) -> list[str]:
    """Mark failed the ``STARTED`` runs whose worker process (the pid of its "Started process
    for run" event) is gone; return their ids.

    The code server records a worker's unexpected exit itself, unless Postgres is down at that
    moment (a full disk, a crash): the run would then stay ``STARTED`` and hold its tenants
    forever, and the default run launcher gives run monitoring no worker health to check.
    Only for ``up``, which runs every worker of the instance on this machine.
    """
    failed: list[str] = []
    for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        pid = _worker_pid(instance, run.run_id)
        if pid is None or psutil.pid_exists(pid):
            continue
        latest = instance.get_run_by_id(run.run_id)  # it may have ended as we looked
        if latest is None or latest.status != DagsterRunStatus.STARTED:
            continue
        instance.report_run_failed(latest, message=f"{reason} (pid {pid})")
        failed.append(run.run_id)
    if failed:
        logger.warning("%d run(s) whose worker exited marked failed", len(failed))
    return failed


def _worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    for record in records:
        entry = record.event_log_entry
        if not (entry.dagster_event and "Started process for run" in (entry.message or "")):
            continue
        pid = (getattr(entry.dagster_event.event_specific_data, "metadata", None) or {}).get("pid")
        if pid is not None:
            return int(pid.value)
    return None
