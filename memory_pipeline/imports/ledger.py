"""The ledger of imported files, keyed by the sha256 of their bytes (``memory_log_import_file``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


@dataclass
class FileImport:
    """One file's import: its identity and what came of it."""

    path: Path
    sha256: str
    size_bytes: int
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: bool = False  # the same content was imported before


def lock_content(conn: psycopg.Connection, sha256: str) -> None:
    """Serialise imports of the same content until the end of the caller's transaction."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"memory_log_import:{sha256}",)
    )


def find_import(conn: psycopg.Connection, sha256: str) -> dict[str, Any] | None:
    """The ledger row of content already imported, or ``None``."""
    return conn.execute(
        "SELECT * FROM memory_log_import_file WHERE content_sha256 = %s", (sha256,)
    ).fetchone()


def record_import(conn: psycopg.Connection, done: FileImport, reject_file: Path | None) -> None:
    """Write ``done`` to the ledger (in the transaction that imported the file)."""
    conn.execute(
        """INSERT INTO memory_log_import_file
               (content_sha256, file_name, size_bytes, records, inserted, duplicates, rejected,
                reject_file)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            done.sha256,
            str(done.path),
            done.size_bytes,
            done.records,
            done.inserted,
            done.duplicates,
            done.rejected,
            str(reject_file) if done.rejected and reject_file else None,
        ),
    )
