"""The embedded PostgreSQL of a home is sized to the machine (its defaults are far too small)."""

from __future__ import annotations

import psycopg

from memory_pipeline.services.local_postgres import MIB, server_memory_settings

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
