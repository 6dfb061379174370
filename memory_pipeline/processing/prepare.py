"""The first step of a batch: decode each claimed row's ``raw_data`` and extract its text.

Every row is handled on its own: a row that cannot be decoded (JSON nested deeper than Python
can follow), is too large, has no text, or makes extraction raise ends as that row's
``skipped`` or ``failed`` outcome and never touches its neighbours.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memory_pipeline.extraction import extract_memory
from memory_pipeline.storage.claims import ClaimedRow
from memory_pipeline.storage.row_outcomes import BatchOutcome, FailedRow, SkippedRow, UnchangedRow

logger = logging.getLogger(__name__)


class UndecodableRawData(ValueError):
    """``raw_data`` that Python cannot turn into objects; the message is the row's reason."""


def content_hash(search_text: str, model_id: str) -> str:
    """Hash of what gets embedded and by which model: unchanged hash, no re-embed."""
    return hashlib.sha256(f"{model_id}\n{search_text}".encode()).hexdigest()


def decode_raw_data(raw_text: str) -> Any:
    """``raw_data`` as Python objects; raises :class:`UndecodableRawData` with a one-line reason.

    Postgres accepts far deeper nesting than Python's decoder, which gives up at its recursion
    limit (about a thousand levels).
    """
    try:
        return json.loads(raw_text)
    except RecursionError:
        raise UndecodableRawData(
            "raw_data is nested too deeply to decode (Python's JSON decoder stops at about "
            "1,000 levels)"
        ) from None
    except (ValueError, MemoryError) as exc:
        raise UndecodableRawData(f"raw_data could not be decoded: {type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class PreparedRow:
    """A claimed row with new text, chunked and ready to embed."""

    row: ClaimedRow
    search_text: str
    text_truncated: bool
    memory_type: str
    occurred_at: datetime
    content_hash: str
    chunks: Sequence[str]


@dataclass
class Preparation:
    """Each claimed row sorted: to embed now, or settled already (unchanged, skipped, failed)."""

    to_embed: list[PreparedRow] = field(default_factory=list)
    settled: BatchOutcome = field(default_factory=BatchOutcome)


def _occurred_at(row: ClaimedRow, extracted: datetime | None) -> datetime:
    if row.occurred_at_explicit:
        return row.occurred_at
    return extracted or row.created_at


def prepare_rows(
    rows: Sequence[ClaimedRow],
    model_id: str,
    chunk_text: Callable[[str], list[str]],
    max_document_bytes: int,
) -> Preparation:
    """Decode and extract every row; sort them into to-embed, unchanged, skipped and failed."""
    out = Preparation()
    for row in rows:
        try:
            _prepare_row(row, model_id, chunk_text, max_document_bytes, out)
        except UndecodableRawData as exc:
            out.settled.skipped.append(
                SkippedRow(row.id, str(exc), "other", _occurred_at(row, None))
            )
        except Exception as exc:  # extraction promises not to raise; stay safe if it does
            out.settled.failed.append(
                FailedRow(row.id, f"extraction failed: {type(exc).__name__}: {exc}")
            )
    return out


def _prepare_row(
    row: ClaimedRow,
    model_id: str,
    chunk_text: Callable[[str], list[str]],
    max_document_bytes: int,
    out: Preparation,
) -> None:
    if row.raw_bytes > max_document_bytes:
        reason = f"raw_data is {row.raw_bytes} bytes; the limit is {max_document_bytes}"
        out.settled.skipped.append(SkippedRow(row.id, reason, "other", _occurred_at(row, None)))
        return
    extracted = extract_memory(decode_raw_data(row.raw_text))
    occurred = _occurred_at(row, extracted.occurred_at)
    if not extracted.text:
        reason = extracted.skip_reason or "no text to embed"
        out.settled.skipped.append(SkippedRow(row.id, reason, extracted.memory_type, occurred))
        return
    digest = content_hash(extracted.text, model_id)
    if digest == row.content_hash and row.embedding_model == model_id and row.chunk_count > 0:
        out.settled.unchanged.append(
            UnchangedRow(
                row.id,
                extracted.text,
                extracted.truncated,
                extracted.memory_type,
                occurred,
                digest,
                row.chunk_count,
            )
        )
        return
    out.to_embed.append(
        PreparedRow(
            row,
            extracted.text,
            extracted.truncated,
            extracted.memory_type,
            occurred,
            digest,
            chunk_text(extracted.text),
        )
    )
