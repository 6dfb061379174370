"""The local Chroma server of a home (``chroma run`` from the chromadb wheel, DESIGN §6).

Every process of the platform talks to this one server; its port and pid are recorded under
``<home>/chroma/server.json`` so other processes find it. The server runs from a config file,
``<home>/chroma/server.yaml`` (:func:`chroma_server_config`), written at each start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_pipeline.local_services.ports import free_port as _free_port
from memory_pipeline.local_services.ports import port_is_free

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
#: The server's collection cache, off by default: without it every request re-reads the
#: collection's record from SQLite (docs/decisions/0005-chroma-collection-cache.md).
COLLECTION_CACHE_ENTRIES = 10_000
COLLECTION_CACHE_TTL_SECONDS = 3600
#: The server's log level (``RUST_LOG``) unless the environment sets one: the default logs
#: every request; an operator needs warnings and errors (decision 0005, as the cache).
DEFAULT_LOG_LEVEL = "warn"
#: Runs the chromadb wheel's ``chroma`` command line where its script is not installed.
CHROMA_CLI_SNIPPET = "import sys; sys.argv[0] = 'chroma'; from chromadb.cli.cli import app; app()"


@dataclass(frozen=True)
class ChromaServerInfo:
    pid: int
    host: str
    port: int


def _state_file(data_dir: Path) -> Path:
    return data_dir / "server.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): look at its state.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def heartbeat_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a Chroma server answers its heartbeat at ``host:port``."""
    try:
        with urllib.request.urlopen(
            f"http://{host}:{port}/api/v2/heartbeat", timeout=timeout
        ) as resp:
            return resp.status == 200
    except OSError:
        return False


def requests_ok(host: str, port: int, timeout: float) -> bool:
    """Whether a Chroma server answers a request that reads its database (the heartbeat alone
    does not: a server whose SQLite hit a full disk keeps answering it and hangs the rest)."""
    url = (
        f"http://{host}:{port}/api/v2/tenants/default_tenant/databases/default_database"
        "/collections_count"
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


#: What Chroma's log says when its SQLite could not write (SQLITE_FULL).
FULL_DISK_ERROR = b"database or disk is full"


def log_size(data_dir: Path) -> int:
    try:
        return (data_dir / "server.log").stat().st_size
    except OSError:
        return 0


def full_disk_logged(data_dir: Path, offset: int) -> tuple[bool, int]:
    """Whether the server's log reports a full disk past ``offset``; and the log's new end."""
    try:
        with open(data_dir / "server.log", "rb") as log:
            log.seek(offset)
            tail = log.read()
    except OSError:
        return False, offset
    return FULL_DISK_ERROR in tail, offset + len(tail)


def kill_local_chroma(info: ChromaServerInfo) -> None:
    """Kill a wedged server at once (its data is on disk; the next start reopens it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(info.pid, signal.SIGKILL)


def running_local_chroma(data_dir: Path) -> ChromaServerInfo | None:
    """The home's Chroma server if it is running and answering, else ``None``."""
    try:
        state = json.loads(_state_file(data_dir).read_text())
        info = ChromaServerInfo(int(state["pid"]), str(state["host"]), int(state["port"]))
    except (OSError, ValueError, KeyError):
        return None
    if _pid_alive(info.pid) and heartbeat_ok(info.host, info.port):
        return info
    return None


def chroma_server_config(data_dir: Path, host: str, port: int) -> dict[str, Any]:
    """The ``chroma run`` configuration of a home's server (Chroma's FrontendServerConfig)."""
    return {
        "persist_path": str(data_dir / "data"),
        "listen_address": host,
        "port": port,
        "stdout_tracing": True,  # as `chroma run --path` does: the log goes to server.log
        "collections_with_segments_provider": {
            "cache": {"lru": {"capacity": COLLECTION_CACHE_ENTRIES}},
            "cache_ttl_secs": COLLECTION_CACHE_TTL_SECONDS,
            "permitted_parallelism": 100,  # Chroma's default
        },
    }


def write_server_config(data_dir: Path, host: str, port: int) -> Path:
    """Write ``<data_dir>/server.yaml`` for a server on ``host:port``; return its path."""
    config_path = data_dir / "server.yaml"
    # JSON is YAML: no YAML writer needed for a flat, generated file.
    config_path.write_text(json.dumps(chroma_server_config(data_dir, host, port), indent=2))
    return config_path


def chroma_command(config_path: Path) -> list[str]:
    """The command line that runs a Chroma server from the config file at ``config_path``."""
    script = Path(sys.executable).with_name("chroma")
    # chromadb.cli.cli has no __main__ guard: `python -m` on it would do nothing
    runner = [str(script)] if script.exists() else [sys.executable, "-c", CHROMA_CLI_SNIPPET]
    return [*runner, "run", str(config_path)]


def _previous_port(data_dir: Path, host: str) -> int | None:
    """The port the home's last server listened on, if it is free again."""
    try:
        state = json.loads(_state_file(data_dir).read_text())
        port = int(state["port"])
    except (OSError, ValueError, KeyError):
        return None
    if state.get("host") != host or not port_is_free(host, port):
        return None
    return port


def start_local_chroma(data_dir: Path, host: str = "127.0.0.1") -> ChromaServerInfo:
    """Start the home's Chroma server (or return the running one) and wait until it answers.

    A server started again after it died takes its old port when that is free, so clients
    that cached the address reach the new server.
    """
    running = running_local_chroma(data_dir)
    if running is not None:
        return running
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _previous_port(data_dir, host) or _free_port(host)
    log_path = data_dir / "server.log"
    logger.info("starting Chroma server on %s:%s (data in %s)", host, port, data_dir)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            chroma_command(write_server_config(data_dir, host, port)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this process, until `db stop`
            env={"RUST_LOG": DEFAULT_LOG_LEVEL, **os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Chroma server exited with code {process.returncode}; see {log_path}"
            )
        if heartbeat_ok(host, port):
            info = ChromaServerInfo(process.pid, host, port)
            _state_file(data_dir).write_text(json.dumps(info.__dict__))
            return info
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(
        f"Chroma server did not answer within {START_TIMEOUT_SECONDS:.0f} s; see {log_path}"
    )


def stop_local_chroma(data_dir: Path, timeout: float = 15.0) -> bool:
    """Stop the home's Chroma server; return whether one was running."""
    try:
        state = json.loads(_state_file(data_dir).read_text())
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError):
        return False
    _state_file(data_dir).unlink(missing_ok=True)
    if not _pid_alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True
