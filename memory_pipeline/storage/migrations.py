"""Ordered, recorded, idempotent application of the SQL files in ``sql/``."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from memory_pipeline.storage.database import connect_once

logger = logging.getLogger(__name__)


def find_sql_dir() -> Path:
    """The migrations folder: ``sql/`` beside a source checkout, else the installed package's copy.

    A wheel carries ``sql/`` as ``memory_pipeline.sql`` (``setup.py``); a checkout reads the
    top-level folder itself, so an edit there needs no reinstall.
    """
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec("memory_pipeline.sql")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if any(Path(location).glob("*.sql")):
            return Path(location)
    raise FileNotFoundError("no SQL migrations: neither a checkout's sql/ nor memory_pipeline.sql")


# Any constant: serialises migrations of concurrent processes on one database.
_MIGRATION_LOCK_ID = 7_340_111_001


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover_migrations(sql_dir: Path | None = None) -> list[Migration]:
    """The migration files ``NNN_name.sql`` in version order (of :func:`find_sql_dir` by default)."""
    sql_dir = sql_dir or find_sql_dir()
    files = sorted(p for p in sql_dir.glob("*.sql") if p.name[:3].isdigit())
    if not files:
        raise FileNotFoundError(f"no SQL migrations found in {sql_dir}")
    return [Migration(p.stem, p) for p in files]


def apply_migrations(database_url: str, sql_dir: Path | None = None) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; return their versions.

    A second call applies nothing.
    """
    applied_now: list[str] = []
    with connect_once(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migration (
                       version text PRIMARY KEY,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                row["version"]: row["checksum"]
                for row in conn.execute("SELECT version, checksum FROM schema_migration")
            }
            for migration in discover_migrations(sql_dir):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        logger.warning(
                            "migration %s changed after it was applied; not re-applied",
                            migration.version,
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migration (version, checksum) VALUES (%s, %s)",
                        (migration.version, migration.checksum),
                    )
                logger.info("applied migration %s", migration.version)
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))
    return applied_now
