"""Test support for the memory service: a real ``memory-pipeline serve`` process, and a stand-in
for the pipeline that embeds the memories the service stores.

The service does not embed (under ``up`` the sensor does), so tests that need memories
searchable run :class:`EmbeddingWorker`: a thread of the test process that calls
``process_pending`` for the tenants it watches, as the sensor would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.tenancy import Tenant
from memory_pipeline_tests.fault_harness import wait_for

READY_SECONDS = 240.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """A running ``memory-pipeline serve``: where it listens and where it logs."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_serve(env: dict[str, str], log_path: Path, *extra: str) -> Iterator[ServiceProcess]:
    """``memory-pipeline serve`` on a free port of 127.0.0.1, ready (``/readyz``) when yielded."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "memory_pipeline.cli", "serve", "--port", str(port), *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}: {service.log()}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{service.base_url}/readyz", timeout=5).status_code == 200
        return False

    try:
        try:
            wait_for(ready, READY_SECONDS, "serve ready", interval=0.3)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}: {service.log()}") from None
        yield service
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class EmbeddingWorker:
    """Embeds the pending memories of the tenants it watches, as the sensor of ``up`` would."""

    def __init__(self, store: MemoryStore, interval: float = 0.2) -> None:
        self.store = store
        self.interval = interval
        self._tenants: set[Tenant] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedding-worker", daemon=True)
        self.errors: list[BaseException] = []

    def watch(self, *tenants: Tenant) -> None:
        with self._lock:
            self._tenants.update(tenants)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                tenants = list(self._tenants)
            for tenant in tenants:
                try:
                    self.store.process_pending(tenant.user_id, tenant.project_id)
                except Exception as exc:  # reported by the fixture, never swallowed
                    self.errors.append(exc)
            self._stop.wait(self.interval)

    def __enter__(self) -> EmbeddingWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
