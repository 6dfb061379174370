"""``memory-pipeline up``: local services, migrations, the memory service and ``dagster dev``
(webserver + daemon), supervised until SIGINT/SIGTERM.

``up`` owns what it runs. At start it marks failed the runs of its Dagster instance that no
worker executes any more (their workers died with an earlier ``up``), so their tenants are
free again. While it runs it starts the home's PostgreSQL and Chroma again when they die (same
socket, same port where free, so clients that cached the address reconnect), and Chroma when
it hit a full disk or answers its heartbeat but hangs every request, restarts
``dagster dev`` and the memory service (``serve``) if they exit on their own, and restarts the
service when Chroma had to move to another port. On the way out it stops everything it started
(decision 0101).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory_pipeline.local_services import ensure_services, stop_services
from memory_pipeline.local_services.endpoints import ServiceEndpoints
from memory_pipeline.local_services.home_lock import HomeBusy, exclusive_home_lock
from memory_pipeline.local_services.local_chroma import (
    ChromaServerInfo,
    full_disk_logged,
    kill_local_chroma,
    log_size,
    requests_ok,
    running_local_chroma,
)
from memory_pipeline.local_services.local_postgres import local_postgres_uri
from memory_pipeline.settings import Settings
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.supervised import SupervisedProcess, answers_ok

logger = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 180.0
#: How often `up` looks at what it supervises.
SUPERVISE_INTERVAL_SECONDS = 1.0
#: How often `up` looks for runs whose worker exited unrecorded (one runs query).
ORPHAN_CHECK_SECONDS = 15.0
#: How often `up` asks the home's Chroma a real request, and how long it may take.
CHROMA_PROBE_SECONDS = 15.0
CHROMA_PROBE_TIMEOUT_SECONDS = 5.0
#: A Chroma that answers its heartbeat but no request for this long is wedged: `up` kills it
#: and starts it again (decision 0102).
CHROMA_WEDGED_SECONDS = 60.0
#: Free space on Chroma's file system after which a Chroma that hit a full disk is restarted.
CHROMA_RESTART_FREE_BYTES = 64 << 20
#: A `dagster dev` that exits sooner than this after its start is not restarted (it would
#: only fail again): `up` stops with its log's address instead.
MIN_DAGSTER_DEV_LIFETIME_SECONDS = 60.0

Announce = Callable[[str], None]


def run_up(settings: Settings, host: str, port: int, service_port: int, announce: Announce) -> int:
    """Run the home's platform until SIGINT/SIGTERM; return the exit code."""
    try:
        with exclusive_home_lock(settings.home, "up"):
            return _run_home(settings, host, port, service_port, announce)
    except HomeBusy:
        raise RuntimeError(
            f"another `memory-pipeline up` is running for the home {settings.home}"
        ) from None
    finally:
        print("memory-pipeline stopped", file=sys.stderr, flush=True)


def _run_home(
    settings: Settings, host: str, port: int, service_port: int, announce: Announce
) -> int:
    started_pg = (
        settings.database_url is None and local_postgres_uri(settings.postgres_data_dir) is None
    )
    started_chroma = (
        settings.chroma_host is None and running_local_chroma(settings.chroma_data_dir) is None
    )
    try:
        endpoints = ensure_services(settings)
        apply_migrations(endpoints.database_url)
        return _run_supervised(settings, endpoints, host, port, service_port, announce)
    finally:
        if started_pg or started_chroma:
            # stop what `up` started; servers that were already running stay up
            stop_services(
                settings.with_overrides(
                    database_url=None if started_pg else "external",
                    chroma_host=None if started_chroma else "external",
                )
            )


def _run_supervised(
    settings: Settings,
    endpoints: ServiceEndpoints,
    host: str,
    port: int,
    service_port: int,
    announce: Announce,
) -> int:
    from memory_pipeline.service.launcher import MemoryService, ensure_admin_key

    stop = _StopRequest()
    key_path, created = ensure_admin_key(settings, endpoints.database_url)
    if created:
        announce(f"created an admin API key for the memory service: {key_path} (mode 0600)")
    service = MemoryService(settings, host, service_port)
    dev = DagsterDev(settings, endpoints, host, port)
    services = ServiceSupervisor(settings, announce)
    with stop:
        try:
            service.start()
            dev.start(announce)
            next_check = next_orphan_check = 0.0
            while not stop.requested:
                if dev.exited():
                    dev.restart_or_raise(announce)
                if time.monotonic() >= next_check:
                    services.restart_stuck_chroma()
                    services.check()
                    service.supervise(announce)
                    next_check = time.monotonic() + SUPERVISE_INTERVAL_SECONDS
                if time.monotonic() >= next_orphan_check:
                    dev.fail_runs_whose_worker_exited(announce)
                    next_orphan_check = time.monotonic() + ORPHAN_CHECK_SECONDS
                service.announce_when_ready(announce)
                dev.announce_when_ready(announce)
                time.sleep(0.5)
        finally:
            dev.terminate()
            service.terminate()
    return 0


class _StopRequest:
    """SIGINT/SIGTERM ask `up` to stop (handlers installed for the block)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _request(self, signum: int, _frame: object) -> None:
        self.requested = True

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _space_is_back(path: Path) -> bool:
    """Whether the file system at ``path`` has ``CHROMA_RESTART_FREE_BYTES`` free (or a
    twentieth of itself, if smaller)."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return False
    wanted = min(CHROMA_RESTART_FREE_BYTES, stat.f_blocks * stat.f_frsize // 20)
    return stat.f_bavail * stat.f_frsize >= wanted


class ServiceSupervisor:
    """Starts the home's local PostgreSQL and Chroma again when they die, and Chroma when it
    stops answering requests."""

    def __init__(self, settings: Settings, announce: Announce) -> None:
        self.settings = settings
        self.announce = announce
        self.chroma_answered = time.monotonic()
        self.next_chroma_probe = 0.0
        self.chroma_log_offset = log_size(settings.chroma_data_dir)
        self.chroma_hit_full_disk = False

    def restart_stuck_chroma(self) -> None:
        """Kill the home's Chroma (the next :meth:`check` starts it again) when it hit a full
        disk and space is back (some of its collections may hang every read until restarted),
        or when it has answered no request for ``CHROMA_WEDGED_SECONDS`` (decision 0102)."""
        now = time.monotonic()
        if self.settings.chroma_host is not None or now < self.next_chroma_probe:
            return
        self.next_chroma_probe = now + CHROMA_PROBE_SECONDS
        data_dir = self.settings.chroma_data_dir
        full, self.chroma_log_offset = full_disk_logged(data_dir, self.chroma_log_offset)
        self.chroma_hit_full_disk |= full
        info = running_local_chroma(data_dir)
        if info is None:  # down: `check` starts it, and its silence counts from then
            self.chroma_answered = now
            return
        why = self._why_restart(info, now)
        if why is None:
            return
        self.announce(why)
        kill_local_chroma(info)
        self.chroma_hit_full_disk = False
        self.chroma_answered = time.monotonic()

    def _why_restart(self, info: ChromaServerInfo, now: float) -> str | None:
        """What makes a running Chroma worth restarting now, or ``None``."""
        if self.chroma_hit_full_disk and _space_is_back(self.settings.chroma_data_dir):
            return (
                "Chroma hit a full disk and space is free again; restarting it "
                "(after a failed write some collections hang until it is)"
            )
        if requests_ok(info.host, info.port, CHROMA_PROBE_TIMEOUT_SECONDS):
            self.chroma_answered = time.monotonic()
            return None
        if now - self.chroma_answered < CHROMA_WEDGED_SECONDS:
            return None
        return (
            f"Chroma answered no request for {now - self.chroma_answered:.0f} s "
            "(its heartbeat still did); killing it to start it again"
        )

    def _down(self) -> list[str]:
        s = self.settings
        down = []
        if s.database_url is None and local_postgres_uri(s.postgres_data_dir) is None:
            down.append("PostgreSQL")
        if s.chroma_host is None and running_local_chroma(s.chroma_data_dir) is None:
            down.append("Chroma")
        return down

    def check(self) -> None:
        start = time.monotonic()
        down: list[str] = []
        try:
            down = self._down()
            if not down:
                return
            ensure_services(self.settings)  # under the home's lock: started once, whoever asks
        except Exception as exc:  # tried again on the next check
            logger.warning("could not start %s again yet: %s", " and ".join(down) or "?", exc)
            return
        self.announce(
            f"{' and '.join(down)} stopped unexpectedly; started again "
            f"in {time.monotonic() - start:.1f} s"
        )


class DagsterDev(SupervisedProcess):
    """``dagster dev`` (webserver + daemon + code server) of the home, in its own process group."""

    def __init__(
        self, settings: Settings, endpoints: ServiceEndpoints, host: str, port: int
    ) -> None:
        super().__init__("dagster dev", settings.home / "dagster-dev.log")
        self.settings = settings
        self.endpoints = endpoints
        self.host = host
        self.port = port
        self.ready_deadline = 0.0
        self.announced = False

    def start(self, announce: Announce) -> None:
        """Free the runs no worker executes any more, then start ``dagster dev``."""
        from memory_pipeline.defs.instance import (
            STORAGE_URL_ENV,
            dagster_storage_url,
            fail_orphaned_runs,
            home_instance,
            prepare_dagster_home,
        )

        dagster_home = prepare_dagster_home(self.settings, self.endpoints)
        with home_instance(self.settings, self.endpoints) as instance:
            orphans = fail_orphaned_runs(
                instance, "its run worker is gone (`memory-pipeline up` stopped or restarted)"
            )
        if orphans:
            announce(f"marked {len(orphans)} run(s) without a worker as failed; their work resumes")
        env = {
            **os.environ,
            **self.settings.environment(),  # what .env set reaches dagster dev, in the home
            "DAGSTER_HOME": str(dagster_home),
            STORAGE_URL_ENV: dagster_storage_url(self.endpoints.database_url),
            "MEMORY_PIPELINE_HOME": str(self.settings.home),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "ANONYMIZED_TELEMETRY": "False",
        }
        command = [
            *(sys.executable, "-m", "dagster", "dev"),
            *("-m", "memory_pipeline.definitions", "-a", "defs"),
            *("--host", self.host, "--port", str(self.port)),
        ]
        self.launch(command, env, cwd=self.settings.home)
        self.ready_deadline = self.started_at + READY_TIMEOUT_SECONDS

    def fail_runs_whose_worker_exited(self, announce: Announce) -> None:
        """Free the runs whose worker died while their end could not be recorded."""
        from memory_pipeline.defs.instance import fail_runs_whose_worker_exited, home_instance

        try:
            with home_instance(self.settings, self.endpoints) as instance:
                failed = fail_runs_whose_worker_exited(
                    instance, "its run worker exited without recording the run's end"
                )
        except Exception as exc:  # Postgres down: tried again on the next check
            logger.debug("could not look for runs without a worker yet: %s", exc)
            return
        if failed:
            announce(f"marked {len(failed)} run(s) whose worker exited as failed; work resumes")

    def restart_or_raise(self, announce: Announce) -> None:
        assert self.process is not None
        code = self.process.returncode
        if self.lifetime() < MIN_DAGSTER_DEV_LIFETIME_SECONDS:
            raise RuntimeError(f"dagster dev exited with code {code}; see {self.log_path}")
        announce(f"dagster dev exited with code {code}; starting it again (see {self.log_path})")
        self.terminate()  # what is left of its group (code server, run workers)
        self.announced = False
        self.start(announce)

    def announce_when_ready(self, announce: Announce) -> None:
        if self.announced:
            return
        if answers_ok(f"http://{self.host}:{self.port}/server_info"):
            announce(
                f"Dagster UI: http://{self.host}:{self.port}  (logs: {self.log_path}; Ctrl-C stops)"
            )
            self.announced = True
        elif time.monotonic() > self.ready_deadline:
            raise RuntimeError(
                f"dagster dev did not answer within {READY_TIMEOUT_SECONDS:.0f} s; "
                f"see {self.log_path}"
            )


__all__ = ["DagsterDev", "ServiceSupervisor", "run_up"]
