"""``memory-pipeline up``: local services, migrations and ``dagster dev`` (webserver + daemon).

The Dagster instance keeps its storage in the app database (schema ``dagster``) through
dagster-postgres; the database URL reaches ``dagster.yaml`` through an environment variable,
so no password is written to disk or logs by us. ``dagster dev`` runs in its own process group
(it ignores signals when started in the background), and the group is signalled on shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg

from memory_pipeline.services.endpoints import ServiceEndpoints
from memory_pipeline.settings import Settings

logger = logging.getLogger(__name__)

DAGSTER_SCHEMA = "dagster"
STORAGE_URL_ENV = "MEMORY_PIPELINE_DAGSTER_STORAGE_URL"
READY_TIMEOUT_SECONDS = 180.0

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
telemetry:
  enabled: false
"""


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


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _webserver_ready(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/server_info", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _terminate_group(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("dagster dev did not stop in %.0f s; killing it", timeout)
    # whatever is left of the group (daemon, code server, run workers) goes too
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_dagster_dev(
    settings: Settings,
    endpoints: ServiceEndpoints,
    host: str,
    port: int,
    announce: Callable[[str], None],
) -> int:
    """Run ``dagster dev`` until SIGINT/SIGTERM or until it exits; return its exit code."""
    if not port_is_free(host, port):
        raise OSError(f"port {port} on {host} is already in use; choose another with --port")
    dagster_home = prepare_dagster_home(settings, endpoints)
    env = {
        **os.environ,
        **settings.environment(),  # what .env set reaches dagster dev, which runs in the home
        "DAGSTER_HOME": str(dagster_home),
        STORAGE_URL_ENV: dagster_storage_url(endpoints.database_url),
        "MEMORY_PIPELINE_HOME": str(settings.home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "ANONYMIZED_TELEMETRY": "False",
    }
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "memory_pipeline.definitions",
        "-a",
        "defs",
        "--host",
        host,
        "--port",
        str(port),
    ]
    log_path = settings.home / "dagster-dev.log"
    stop_requested = False

    def _request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(settings.home),
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        announced = False
        while not stop_requested:
            code = process.poll()
            if code is not None:
                raise RuntimeError(f"dagster dev exited with code {code}; see {log_path}")
            if not announced:
                if _webserver_ready(host, port):
                    announce(f"Dagster UI: http://{host}:{port}  (logs: {log_path}; Ctrl-C stops)")
                    announced = True
                elif time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dagster dev did not answer within {READY_TIMEOUT_SECONDS:.0f} s; see {log_path}"
                    )
            time.sleep(0.5)
        return 0
    finally:
        _terminate_group(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def delete_tenant_partition(
    settings: Settings, endpoints: ServiceEndpoints, tenant_key: str
) -> bool:
    """Remove a tenant's dynamic partition from the home's Dagster instance, if there is one."""
    home = settings.resolved_dagster_home
    if not (home / "dagster.yaml").exists():
        return False
    from dagster import DagsterInstance

    from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME

    previous = os.environ.get(STORAGE_URL_ENV)
    os.environ[STORAGE_URL_ENV] = dagster_storage_url(endpoints.database_url)
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            if not instance.has_dynamic_partition(TENANT_PARTITIONS_NAME, tenant_key):
                return False
            instance.delete_dynamic_partition(TENANT_PARTITIONS_NAME, tenant_key)
            return True
    finally:
        if previous is None:
            os.environ.pop(STORAGE_URL_ENV, None)
        else:
            os.environ[STORAGE_URL_ENV] = previous
