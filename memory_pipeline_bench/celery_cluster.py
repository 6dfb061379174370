"""A Celery deployment on one machine, for the distributed test and bench E-celery.

It plays the parts a real deployment has on separate machines (docs/deployment.md):

- a **broker**: Debian's ``redis-server`` on a Unix socket in the cluster's folder (no TCP port);
- **step workers**: ``celery -A memory_pipeline.defs.celery_app worker --pool=solo``, each with
  its own environment and home: they reach Postgres by ``MEMORY_PIPELINE_DATABASE_URL``, Chroma
  by ``MEMORY_PIPELINE_CHROMA_HOST/PORT`` and Dagster's storage by its URL, nothing else;
- the **Dagster host**: ``dagster-daemon run`` with the code location (its sensor requests runs,
  the run queue launches them; each run orchestrates its step through the broker).

Every process is started in its own session and ended by its pid (its process group for the
daemon, whose code server and run workers are its children).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory_pipeline.defs.executors import BROKER_URL_ENV
from memory_pipeline.defs.instance import (
    DAGSTER_SCHEMA,
    STORAGE_URL_ENV,
    dagster_storage_url,
)
from memory_pipeline.local_services import ServiceEndpoints

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER_APP = "memory_pipeline.defs.celery_app"
READY_LINE = " ready."
#: Materialization metadata: the rows a run embedded for one tenant (defs/metadata.py).
RUN_EMBEDDED = "run_embedded"
#: The per-run queue of the Dagster host: runs at once (each only orchestrates its one step).
DEFAULT_CONCURRENT_RUNS = 4

INSTANCE_YAML = """\
# Written by memory_pipeline_bench.celery_cluster: storage in Postgres, shared with the workers.
storage:
  postgres:
    postgres_url:
      env: {storage_env}
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: {concurrent_runs}
    dequeue_interval_seconds: 1
compute_logs:
  module: dagster.core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
telemetry:
  enabled: false
"""


def redis_server_path() -> str:
    """Debian's ``redis-server`` (the Makefile installs it); ``RuntimeError`` when missing."""
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    return path


def _spawn(command: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def end_process(process: subprocess.Popen, *, group: bool = False, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: the process (or its process group) by pid."""
    send = os.killpg if group else os.kill
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            send(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    if group:  # children of the group (code server, run workers) may outlive its leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    elif process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``condition()`` until it returns a truthy value; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path
    home: Path

    @property
    def hostname(self) -> str:
        """The Celery node name, as Dagster's engine events record it."""
        return f"{self.name}@{os.uname().nodename}"

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"worker {self.name} exited with {self.process.returncode}; {self.log}"
            )
        return READY_LINE in self.log.read_text(errors="replace")


@dataclass
class CeleryCluster:
    """Broker, workers and Dagster host under ``folder``, for the endpoints' Postgres and Chroma."""

    folder: Path
    endpoints: ServiceEndpoints
    #: settings every process gets (budgets, retries, visibility timeout, ...)
    settings_env: Mapping[str, str] = field(default_factory=dict)
    concurrent_runs: int = DEFAULT_CONCURRENT_RUNS
    redis: subprocess.Popen | None = None
    workers: dict[str, Worker] = field(default_factory=dict)
    daemon: subprocess.Popen | None = None
    #: every process started, for the end-of-life check
    started: list[subprocess.Popen] = field(default_factory=list)

    @property
    def socket_path(self) -> Path:
        return self.folder / "redis.sock"

    @property
    def broker_url(self) -> str:
        return f"redis+socket://{self.socket_path}"

    @property
    def dagster_home(self) -> Path:
        return self.folder / "host" / "dagster"

    @property
    def storage_url(self) -> str:
        return dagster_storage_url(self.endpoints.database_url)

    def common_env(self) -> dict[str, str]:
        """What every machine of the deployment is told: where the shared servers are."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
            "LANG": "C.UTF-8",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "ANONYMIZED_TELEMETRY": "False",
            "MEMORY_PIPELINE_DATABASE_URL": self.endpoints.database_url,
            "MEMORY_PIPELINE_CHROMA_HOST": self.endpoints.chroma_host,
            "MEMORY_PIPELINE_CHROMA_PORT": str(self.endpoints.chroma_port),
            "MEMORY_PIPELINE_EXECUTOR": "celery",
            BROKER_URL_ENV: self.broker_url,
            STORAGE_URL_ENV: self.storage_url,
            **self.settings_env,
        }
        if self.endpoints.chroma_token:
            env["MEMORY_PIPELINE_CHROMA_TOKEN"] = self.endpoints.chroma_token
        return env

    def _machine_env(self, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        return {
            **self.common_env(),
            "HOME": str(home),
            "MEMORY_PIPELINE_HOME": str(home),
            **(extra or {}),
        }

    # -- broker -------------------------------------------------------------------------------

    def start_broker(self, timeout: float = 30.0) -> None:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_path(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        self.redis = _spawn(command, os.environ, self.folder / "redis.log", self.folder)
        self.started.append(self.redis)

        def answers() -> bool:
            if self.redis is not None and self.redis.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.folder / 'redis.log'}")
            if not self.socket_path.exists():
                return False
            try:
                return bool(redis.Redis(unix_socket_path=str(self.socket_path)).ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, timeout, "redis-server answering")

    # -- workers ------------------------------------------------------------------------------

    def start_worker(
        self,
        name: str,
        extra_env: Mapping[str, str] | None = None,
        include: Iterable[str] = (),
    ) -> Worker:
        """Start a step worker (not waiting for it); ``include``: more modules it imports."""
        home = self.folder / "workers" / name
        env = self._machine_env(home, extra_env)
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            WORKER_APP,
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=INFO",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        if include:
            command += ["--include", ",".join(include)]
        worker = Worker(
            name, _spawn(command, env, home / "worker.log", home), home / "worker.log", home
        )
        self.workers[name] = worker
        self.started.append(worker.process)
        return worker

    def wait_for_workers(self, timeout: float = 240.0) -> None:
        """Until every started worker has loaded the model and listens on the queue."""
        wait_for(
            lambda: all(w.ready() for w in self.workers.values() if w.process.poll() is None),
            timeout,
            "the Celery workers getting ready",
        )

    def kill_worker(self, name: str) -> None:
        """``kill -9`` the worker: a machine lost mid-step, no warm shutdown, no ack."""
        worker = self.workers[name]
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()

    # -- Dagster host -------------------------------------------------------------------------

    def host_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The Dagster host's environment; ``extra`` overrides settings of the host only."""
        home_env = {"DAGSTER_HOME": str(self.dagster_home), **(extra or {})}
        return self._machine_env(self.folder / "host", home_env)

    def prepare_instance(self) -> None:
        """The host's dagster.yaml and Dagster's schema in the app database."""
        import psycopg

        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.dagster_home / "dagster.yaml").write_text(
            INSTANCE_YAML.format(storage_env=STORAGE_URL_ENV, concurrent_runs=self.concurrent_runs)
        )
        with psycopg.connect(self.endpoints.database_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DAGSTER_SCHEMA}")

    def start_daemon(self, extra_env: Mapping[str, str] | None = None) -> None:
        """``dagster-daemon run`` on the code location: sensor, run queue, run launcher.

        ``extra_env`` overrides settings of the host only (``MEMORY_PIPELINE_EXECUTOR``).
        """
        self.prepare_instance()
        daemon = Path(sys.executable).with_name("dagster-daemon")
        command = [str(daemon)] if daemon.exists() else [sys.executable, "-m", "dagster._daemon"]
        command += ["run", "-m", "memory_pipeline.definitions", "-a", "defs"]
        self.daemon = _spawn(
            command, self.host_env(extra_env), self.folder / "daemon.log", self.folder / "host"
        )
        self.started.append(self.daemon)

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            end_process(self.daemon, group=True)
            self.daemon = None

    def stop_worker(self, name: str) -> None:
        """A warm shutdown (SIGTERM): the worker finishes its step first."""
        end_process(self.workers.pop(name).process, timeout=120.0)

    def instance(self) -> Any:
        """The host's Dagster instance, opened in this process (storage URL set for it)."""
        from dagster import DagsterInstance

        os.environ[STORAGE_URL_ENV] = self.storage_url
        return DagsterInstance.from_config(str(self.dagster_home))

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """End every process this cluster started: daemon group, workers, broker."""
        if self.daemon is not None:
            end_process(self.daemon, group=True)
        for worker in self.workers.values():
            end_process(worker.process)
        if self.redis is not None:
            end_process(self.redis)

    def pids(self) -> list[int]:
        """Every process this cluster started, ended or not."""
        return [p.pid for p in self.started]

    def survivors(self) -> list[int]:
        """Processes or process groups (a daemon's code server, run workers) still alive."""
        alive: list[int] = []
        for process in self.started:
            try:  # every process was started in its own session: its pid names its group
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            alive.append(process.pid)
        return alive


@contextlib.contextmanager
def celery_cluster(
    folder: Path,
    endpoints: ServiceEndpoints,
    settings_env: Mapping[str, str] | None = None,
    concurrent_runs: int = DEFAULT_CONCURRENT_RUNS,
) -> Iterator[CeleryCluster]:
    """A started broker (workers and daemon are started by the caller); all stopped on exit.

    The folder (logs of broker, workers, daemon) is removed after a clean exit only.
    """
    cluster = CeleryCluster(folder, endpoints, dict(settings_env or {}), concurrent_runs)
    try:
        cluster.start_broker()
        yield cluster
    finally:
        cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)  # kept, with every log, when something failed


@dataclass
class StepRecord:
    """Who ran one tenant-vectors step of a run, and how many rows it embedded."""

    run_id: str
    worker: str | None
    embedded: int
    attempts_by_worker: list[str]


def step_records(instance: Any, run_ids: Iterable[str], asset_name: str) -> list[StepRecord]:
    """Per run: the Celery worker that finished its asset step (the last to start it), its rows.

    A run's asset checks are steps of their own and go to any worker; only the asset's step
    (key ``asset_name``) is counted. dagster-celery records an engine event "Executing steps
    ... in celery worker" with the worker's node name each time a worker starts the step; a
    redelivered step has two. A killed attempt materializes nothing (its events end early).
    """
    records: list[StepRecord] = []
    for run_id in run_ids:
        attempts: list[str] = []
        embedded = 0
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            data = event.event_specific_data
            if event.event_type_value == "ENGINE_EVENT" and event.step_key == asset_name:
                metadata = getattr(data, "metadata", None) or {}
                if "Celery worker" in metadata:
                    attempts.append(str(metadata["Celery worker"].value))
            elif event.event_type_value == "ASSET_MATERIALIZATION":
                # each tenant's materialization says what the run did to its rows (run_*)
                materialization = data.materialization
                value = materialization.metadata.get(RUN_EMBEDDED)
                if materialization.asset_key.path[-1] == asset_name and value is not None:
                    embedded += int(value.value)
        worker = attempts[-1] if attempts else None
        records.append(StepRecord(run_id, worker, embedded, attempts))
    return records


def rows_by_worker(records: Iterable[StepRecord]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for record in records:
        totals[record.worker or "?"] += record.embedded
    return dict(totals)
