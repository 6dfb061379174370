"""The embedded PostgreSQL of a home is sized to the machine (its defaults are far too small),
and starts again on the same socket after it was killed."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from memory_pipeline.local_services.local_postgres import (
    MIB,
    server_memory_settings,
    start_local_postgres,
    stop_local_postgres,
)
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.migrations import apply_migrations

GIB = 1024 * MIB


def test_memory_settings_scale_with_the_machine_within_bounds() -> None:
    small, medium, large = (server_memory_settings(n * GIB) for n in (1, 4, 64))
    assert small["shared_buffers"] == 256 * MIB and small["maintenance_work_mem"] == 64 * MIB
    assert medium["shared_buffers"] == 1 * GIB and medium["maintenance_work_mem"] == 256 * MIB
    assert large["shared_buffers"] == 2 * GIB and large["maintenance_work_mem"] == 1 * GIB
    assert server_memory_settings(256 * MIB)["shared_buffers"] == 128 * MIB


def test_the_homes_server_runs_with_those_settings(database_url: str) -> None:
    wanted = server_memory_settings()
    with psycopg.connect(database_url) as conn:
        for name, value in wanted.items():
            (setting, unit) = conn.execute(
                "SELECT setting::bigint, unit FROM pg_settings WHERE name = %s", (name,)
            ).fetchone()
            size = {"8kB": 8192, "kB": 1024}[unit]
            assert setting * size == value, name


def test_a_killed_server_starts_again_on_the_same_socket_and_old_pools_reconnect() -> None:
    home = Path(tempfile.mkdtemp(prefix="mpk-", dir="/tmp"))  # short: socket path limit
    data_dir = home / "pg"
    uri = start_local_postgres(data_dir)
    db: Database | None = None
    try:
        apply_migrations(uri)  # the pool registers pgvector's types on each connection
        db = Database(uri, max_size=3)
        with db.connection() as a, db.connection() as b:  # two idle connections in the pool
            a.execute("SELECT 1")
            b.execute("SELECT 1")
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(pid)], timeout=30)

        assert start_local_postgres(data_dir) == uri  # same process, same socket

        with pytest.raises(psycopg.OperationalError), db.connection() as conn:
            conn.execute("SELECT 1")  # one stale connection fails ...
        with db.connection() as conn:  # ... and takes the pool's other stale ones with it
            assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1
    finally:
        if db is not None:
            db.close()
        stop_local_postgres(data_dir)
        shutil.rmtree(home, ignore_errors=True)
