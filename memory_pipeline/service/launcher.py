"""The service under ``memory-pipeline up``: an admin key on first start, and ``serve`` beside
``dagster dev``, stopped with it.

The admin key is written once to ``<home>/service/admin.key`` (mode 0600, its folder 0700);
later starts leave it as it is (revoking it is the user's choice, not something to undo).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from memory_pipeline.service.keys import create_key
from memory_pipeline.settings import Settings
from memory_pipeline.storage.database import Database

READY_TIMEOUT_SECONDS = 300.0


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


def _ready(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_until_ready(
    host: str, port: int, process: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_SECONDS
) -> None:
    """Block until the service answers ``/readyz``; ``RuntimeError`` if it exits or never does."""
    deadline = time.monotonic() + timeout
    while not _ready(host, port):
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
    announce: Callable[[str], None],
    extra_args: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``memory-pipeline serve`` in its own process group while the block runs.

    Announces its address once it answers ``/readyz``; stops it (SIGTERM, then SIGKILL) on
    the way out. Its log is ``<home>/service.log``.
    """
    log_path = settings.home / "service.log"
    env = {**os.environ, "MEMORY_PIPELINE_HOME": str(settings.home)}
    command = [sys.executable, "-m", "memory_pipeline.cli", "serve"]
    command += ["--host", host, "--port", str(port), *extra_args]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stopping = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not stopping.is_set() and time.monotonic() < deadline:
            if process.poll() is not None:
                announce(f"memory service exited with code {process.returncode}; see {log_path}")
                return
            if _ready(host, port):
                announce(f"Memory service: http://{host}:{port}  (API docs /docs, MCP /mcp)")
                return
            stopping.wait(0.5)

    watcher = threading.Thread(target=watch, name="service-ready", daemon=True)
    watcher.start()
    try:
        yield process
    finally:
        stopping.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        watcher.join(timeout=5)
