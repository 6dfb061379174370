"""Bulk import of memories from JSONL, CSV and Parquet files (DESIGN §5 ``import``).

Each file is imported in one transaction: its records are read as a stream, validated in Python
(bad ones go to the reject file with their line and reason), staged in batches through ``COPY``
and moved into ``memory_log`` with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per batch,
and the file's sha256 is written to the ledger. So an import is idempotent twice over: a
``(tenant, external_id)`` already present is a duplicate, and a file whose content was imported
before (under any name) is skipped. A failure rolls the file back whole.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
from tqdm import tqdm

from memory_pipeline.imports import ledger, staging
from memory_pipeline.imports.ledger import FileImport
from memory_pipeline.imports.readers import READERS, Advance, reader_for
from memory_pipeline.imports.records import ImportRow, RecordValidator
from memory_pipeline.imports.rejects import RejectFile
from memory_pipeline.settings import Settings
from memory_pipeline.storage.database import Database

if TYPE_CHECKING:
    from memory_pipeline.memory_store import MemoryStore

logger = logging.getLogger(__name__)

#: Records validated, staged and inserted at a time; bounds memory whatever the file's size.
BATCH_SIZE = 10_000


@dataclass
class ImportSummary:
    """What an import did, over all its files."""

    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reject_file: Path | None = None
    files: list[FileImport] = field(default_factory=list)
    #: Files that could not be read, with the error (only when asked to go on past them).
    failures: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, done: FileImport) -> None:
        self.files.append(done)
        self.inserted += done.inserted
        self.duplicates += done.duplicates
        self.rejected += done.rejected

    def as_dict(self) -> dict[str, Any]:
        """The CLI's ``import`` output: the four keys of DESIGN §5, then file counts."""
        return {
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "reject_file": str(self.reject_file) if self.reject_file else None,
            "files_imported": sum(not f.skipped for f in self.files),
            "files_skipped": sum(f.skipped for f in self.files),
        }


def import_files(
    store: MemoryStore, paths: Sequence[str | Path], *, progress: bool = False
) -> dict[str, Any]:
    """Import memories from files; return ``{"inserted", "duplicates", "rejected", "reject_file",
    "files_imported", "files_skipped"}``.

    Files are JSONL (``.jsonl``/``.ndjson``), CSV or Parquet with fields ``user_id``,
    ``project_id``, ``raw_data`` (a JSON object; in CSV a JSON string; in Parquet a JSON string
    or a struct), optional ``external_id``, ``created_at`` and ``occurred_at`` (ISO 8601).
    Rows arrive ``pending``. A record repeating an earlier ``(tenant, external_id)``, in the
    database or earlier in the import, is a duplicate; a file whose content was imported before
    is skipped. Invalid records go to ``$MEMORY_PIPELINE_HOME/rejects/import-….jsonl`` as
    ``{"line", "reason", "record", "file"}`` (``line``: see :mod:`memory_pipeline.imports.readers`).
    A file that cannot be read raises ``OSError`` or ``ValueError`` naming it; files before it
    stay imported. ``progress`` shows a bar on stderr.
    """
    return import_paths(store.db, store.settings, paths, progress=progress).as_dict()


def import_paths(
    db: Database,
    settings: Settings,
    paths: Iterable[str | Path],
    *,
    progress: bool = False,
    keep_going: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportSummary:
    """Import ``paths`` into ``db`` (see :func:`import_files`).

    With ``keep_going``, a file that cannot be read is recorded in ``failures`` and the others
    are still imported (the scheduled job); otherwise its error is raised.
    """
    summary = ImportSummary()
    sources: list[tuple[Path, str, int]] = []
    for path in map(Path, paths):
        try:
            sources.append(_identify(path))
        except (OSError, ValueError) as exc:
            if not keep_going:
                raise
            summary.failures.append((path, str(exc)))
    validator = RecordValidator(settings.max_document_bytes)
    total = sum(size for _, _, size in sources)
    with (
        RejectFile(settings.rejects_dir) as rejects,
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="import",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
    ):
        for path, sha256, size in sources:
            done = FileImport(path, sha256, size)
            try:
                _import_file(db, done, validator, rejects, bar.update, batch_size)
            except (OSError, ValueError, RuntimeError) as exc:
                if not keep_going:
                    raise
                summary.failures.append((path, str(exc)))
                continue
            summary.add(done)
            logger.info(
                "%s: %s",
                path,
                "already imported; skipped"
                if done.skipped
                else f"{done.inserted} inserted, {done.duplicates} duplicates, {done.rejected} rejected",
            )
        summary.reject_file = rejects.path
    return summary


def import_candidates(settings: Settings) -> list[Path]:
    """Files under the import folder an import would take: known types, not hidden, by name.

    Whether each is new is decided by the ledger when it is imported. Write files elsewhere (or
    under a name starting with ``.``) and move them in when complete, so a half-written file
    is never imported. The home's own folders (rejects, databases) are never candidates, even
    when the import folder is the home itself.
    """
    folder = settings.resolved_import_dir
    if not folder.is_dir():
        return []
    own = [
        settings.rejects_dir,
        settings.resolved_dagster_home,
        settings.postgres_data_dir,
        settings.chroma_data_dir,
    ]
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in READERS
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and not any(path.is_relative_to(folder_of_home) for folder_of_home in own)
        and path.is_file()
    )


def _identify(path: Path) -> tuple[Path, str, int]:
    """``(path, sha256, size)``; ``OSError``/``ValueError`` naming a file that cannot be read."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise IsADirectoryError(f"{path}: not a regular file")
    reader_for(path)
    try:
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        raise OSError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return path, digest, path.stat().st_size


def _import_file(
    db: Database,
    done: FileImport,
    validator: RecordValidator,
    rejects: RejectFile,
    advance: Advance,
    batch_size: int,
) -> None:
    with db.connection() as conn, conn.transaction():
        ledger.lock_content(conn, done.sha256)
        if (earlier := ledger.find_import(conn, done.sha256)) is not None:
            logger.info(
                "%s has the content of %s, imported before", done.path, earlier["file_name"]
            )
            done.skipped = True
            advance(done.size_bytes)
            return
        rows = _valid_rows(done, validator, rejects, advance)
        try:
            while batch := list(islice(rows, batch_size)):
                result = staging.load_batch(conn, batch)
                done.inserted += result.inserted
                done.duplicates += result.duplicates
        except csv.Error as exc:
            raise ValueError(f"{done.path}: not readable as CSV: {exc}") from None
        except pa.ArrowException as exc:
            raise ValueError(f"{done.path}: not readable as Parquet: {exc}") from None
        except OSError as exc:
            raise OSError(f"{done.path}: cannot read: {exc.strerror or exc}") from None
        except psycopg.Error as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RuntimeError(
                f"{done.path}: the database refused the import: {first_line}"
            ) from exc
        ledger.record_import(conn, done, rejects.path)


def _valid_rows(
    done: FileImport, validator: RecordValidator, rejects: RejectFile, advance: Advance
) -> Iterator[ImportRow]:
    for item in reader_for(done.path)(done.path, advance):
        done.records += 1
        row: ImportRow | None = None
        reason = item.error
        if reason is None:
            try:
                row = validator.validate(item.line, item.record)
            except ValueError as exc:
                reason = str(exc)
        if row is not None:
            yield row
        else:
            rejects.add(done.path, item.line, reason or "invalid record", item.record)
            done.rejected += 1
