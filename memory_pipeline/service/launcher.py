"""The service under ``memory-pipeline up``: an admin key on first start, and ``serve`` beside
``dagster dev``, restarted when it dies or when Chroma moves, stopped with it.

The admin key is written once to ``<home>/service/admin.key`` (mode 0600, its folder 0700);
later starts leave it as it is (revoking it is the user's choice, not something to undo).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from memory_pipeline.local_services.local_chroma import running_local_chroma
from memory_pipeline.service.keys import create_key
from memory_pipeline.settings import Settings
from memory_pipeline.storage.database import Database
from memory_pipeline.supervised import SupervisedProcess, answers_ok

READY_TIMEOUT_SECONDS = 300.0
#: A service that exits sooner than this after its start is not restarted (it would only fail
#: again, e.g. on a bad option): `up` stops with its log's address instead.
MIN_SERVICE_LIFETIME_SECONDS = 60.0

Announce = Callable[[str], None]


def admin_key_path(settings: Settings) -> Path:
    return settings.home / "service" / "admin.key"


def ensure_admin_key(settings: Settings, database_url: str) -> tuple[Path, bool]:
    """The admin key file of the home, created with a new admin key if absent; (path, created)."""
    path = admin_key_path(settings)
    if path.exists():
        return path, False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = Database(database_url, max_size=1)
    try:
        new = create_key(db, None, name="admin (memory-pipeline up)")
    finally:
        db.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new.key + "\n")
    return path, True


class MemoryService(SupervisedProcess):
    """``memory-pipeline serve`` of the home in its own process group, logging to
    ``<home>/service.log``; :meth:`supervise` restarts it when it dies or when the home's
    Chroma now listens on another port than the one the service connected to."""

    def __init__(
        self, settings: Settings, host: str, port: int, extra_args: Sequence[str] = ()
    ) -> None:
        super().__init__("the memory service", settings.home / "service.log")
        self.settings = settings
        self.host = host
        self.port = port
        self.extra_args = tuple(extra_args)
        self.chroma_address: tuple[str, int] | None = None
        self.announced = False
        self.ready_deadline = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _local_chroma(self) -> tuple[str, int] | None:
        """Where the home's own Chroma listens now (``None``: external, or not running)."""
        if self.settings.chroma_host is not None:
            return None
        info = running_local_chroma(self.settings.chroma_data_dir)
        return None if info is None else (info.host, info.port)

    def start(self) -> None:
        self.chroma_address = self._local_chroma()
        env = {**os.environ, "MEMORY_PIPELINE_HOME": str(self.settings.home)}
        command = [sys.executable, "-m", "memory_pipeline.cli", "serve"]
        command += ["--host", self.host, "--port", str(self.port), *self.extra_args]
        self.launch(command, env)
        self.announced = False
        self.ready_deadline = self.started_at + READY_TIMEOUT_SECONDS

    def ready(self) -> bool:
        return answers_ok(f"{self.base_url}/readyz")

    def announce_when_ready(self, announce: Announce) -> None:
        """Say the service's address once it is ready (once per start)."""
        if self.announced or self.exited():
            return
        if self.ready():
            announce(f"Memory service: {self.base_url}  (API docs /docs, MCP /mcp)")
            self.announced = True
        elif time.monotonic() > self.ready_deadline:
            announce(
                f"the memory service is not ready after {READY_TIMEOUT_SECONDS:.0f} s; "
                f"see {self.log_path}"
            )
            self.announced = True

    def supervise(self, announce: Announce) -> None:
        """Restart the service if it exited, or if Chroma moved to another port."""
        assert self.process is not None
        if self.exited():
            code = self.process.returncode
            if self.lifetime() < MIN_SERVICE_LIFETIME_SECONDS:
                raise RuntimeError(
                    f"the memory service exited with code {code}; see {self.log_path}"
                )
            announce(f"the memory service exited with code {code}; starting it again")
        else:
            now = self._local_chroma()
            if now is None or self.chroma_address is None or now == self.chroma_address:
                return
            announce(f"Chroma now listens on port {now[1]}; restarting the memory service")
        self.terminate()
        self.start()


def wait_until_ready(
    host: str, port: int, process: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_SECONDS
) -> None:
    """Block until the service answers ``/readyz``; ``RuntimeError`` if it exits or never does."""
    deadline = time.monotonic() + timeout
    while not answers_ok(f"http://{host}:{port}/readyz"):
        if process.poll() is not None:
            raise RuntimeError(f"the memory service exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the memory service was not ready within {timeout:.0f} s")
        time.sleep(0.3)


@contextlib.contextmanager
def running_service(
    settings: Settings,
    host: str,
    port: int,
    announce: Announce,
    extra_args: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``memory-pipeline serve`` while the block runs (not supervised: for benches and tools).

    Announces its address once it answers ``/readyz``; stops it (SIGTERM, then SIGKILL) on
    the way out.
    """
    service = MemoryService(settings, host, port, extra_args)
    service.start()
    stopping = threading.Event()

    def watch() -> None:
        while not (stopping.is_set() or service.announced):
            if service.exited():
                announce(f"the memory service exited; see {service.log_path}")
                return
            service.announce_when_ready(announce)
            stopping.wait(0.5)

    watcher = threading.Thread(target=watch, name="service-ready", daemon=True)
    watcher.start()
    try:
        assert service.process is not None
        yield service.process
    finally:
        stopping.set()
        service.terminate(timeout=20)
        watcher.join(timeout=5)
