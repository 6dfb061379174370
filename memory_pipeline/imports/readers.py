"""Readers of import files, streamed record by record: JSONL, CSV and Parquet.

Every reader yields :class:`SourceRecord` s whose ``line`` says where the record is:

- **JSONL** (``.jsonl``, ``.ndjson``): the 1-based line number in the file. Blank lines are
  skipped; a line that is not JSON is yielded with an ``error`` and its text as the record.
- **CSV** (``.csv``): a header row names the fields; ``line`` is the 1-based line number in the
  file where the record *starts* (the header is line 1, so the first data row is normally line 2;
  a quoted field may span lines). A row with more fields than the header is yielded with an
  ``error``; missing trailing fields are absent from the record.
- **Parquet** (``.parquet``): the 1-based row number in the file, read in batches with pyarrow.

Text is decoded as UTF-8 (a leading byte-order mark is ignored); undecodable bytes become lone
surrogates, which validation rejects record by record rather than failing the whole file.
A file that cannot be read at all raises ``OSError`` or ``ValueError`` naming it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from memory_pipeline.memories import TOO_DEEP

#: Called with the number of bytes of the file consumed so far (for progress bars).
Advance = Callable[[int], None]

#: Parquet rows converted to Python at a time.
PARQUET_BATCH_ROWS = 10_000

# raw_data may be up to MEMORY_PIPELINE_MAX_DOCUMENT_BYTES (1 MiB by default) inside one CSV
# field; the csv module's default limit is 128 KiB. Size limits are enforced by validation.
csv.field_size_limit(2**31 - 1)


class SourceRecord(NamedTuple):
    """One record as read: where it is, what it holds, and why it is unusable (if it is)."""

    line: int
    record: Any
    error: str | None = None


def _decoded_lines(path: Path, advance: Advance) -> Iterator[str]:
    with path.open("rb") as file:
        first = True
        for raw in file:
            advance(len(raw))
            text = raw.decode("utf-8", errors="surrogateescape")
            if first:
                text = text.removeprefix("\ufeff")
                first = False
            yield text


def read_jsonl(path: Path, advance: Advance) -> Iterator[SourceRecord]:
    """Records of a JSON Lines file, one per non-blank line."""
    for number, text in enumerate(_decoded_lines(path, advance), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield SourceRecord(number, text.rstrip("\r\n"), f"invalid JSON: {exc}")
            continue
        except RecursionError:  # one hostile line is rejected; the import goes on
            yield SourceRecord(number, text.rstrip("\r\n"), f"the record {TOO_DEEP}")
            continue
        yield SourceRecord(number, record)


def read_csv(path: Path, advance: Advance) -> Iterator[SourceRecord]:
    """Records of a CSV file with a header row, as ``{column: text}`` dicts."""
    reader = csv.reader(_decoded_lines(path, advance))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if not row:  # a blank line
            continue
        if len(row) > len(header):
            yield SourceRecord(
                line, row, f"row has {len(row)} fields; the header has {len(header)}"
            )
            continue
        yield SourceRecord(line, dict(zip(header, row, strict=False)))


def read_parquet(path: Path, advance: Advance) -> Iterator[SourceRecord]:
    """Records of a Parquet file, one per row; struct columns arrive as dicts."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file: {exc}") from None
    with parquet:
        total_rows = parquet.metadata.num_rows or 1
        size = path.stat().st_size
        row_number = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                row_number += 1
                yield SourceRecord(row_number, record)
            advance(size * batch.num_rows // total_rows)


#: File name suffix → reader.
READERS: dict[str, Callable[[Path, Advance], Iterator[SourceRecord]]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
}


def reader_for(path: Path) -> Callable[[Path, Advance], Iterator[SourceRecord]]:
    """The reader for ``path``'s type; ``ValueError`` for a type that cannot be imported."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        kinds = ", ".join(sorted(READERS))
        raise ValueError(
            f"{path}: cannot import files of type {path.suffix or '(none)'!r}; use {kinds}"
        )
    return reader
