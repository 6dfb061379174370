"""What a run made of its claimed rows, and recording it: vectors into memory_vector, then each row
``embedded``, ``skipped``, ``failed`` or ``dead``.

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import psycopg


@dataclass(frozen=True, slots=True)
class ProcessedRow:
    """What the store step made of a row: its text, type, time and content hash."""

    id: int
    search_text: str
    text_truncated: bool
    memory_type: str
    occurred_at: datetime
    content_hash: str


@dataclass(frozen=True, slots=True)
class EmbeddedRow(ProcessedRow):
    """A row whose new vectors were written to Chroma (one vector per chunk)."""

    chunk_texts: Sequence[str]
    vectors: np.ndarray  # one row per chunk

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_texts)


@dataclass(frozen=True, slots=True)
class UnchangedRow(ProcessedRow):
    """A row whose text and model are unchanged: its vectors are kept, nothing re-embedded."""

    chunk_count: int


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A row with nothing to embed; ``reason`` goes to ``last_error``."""

    id: int
    reason: str
    memory_type: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A row whose attempt failed; ``error`` goes to ``last_error``."""

    id: int
    error: str


@dataclass
class BatchOutcome:
    """How each claimed row of a batch ends (rows settled before embedding start here too)."""

    embedded: list[EmbeddedRow] = field(default_factory=list)
    unchanged: list[UnchangedRow] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    failed: list[FailedRow] = field(default_factory=list)


def write_vectors(
    conn: psycopg.Connection,
    tenant_key: str | Mapping[int, str],
    model_id: str,
    rows: Sequence[EmbeddedRow],
) -> None:
    """Replace the rows' vectors of ``model_id`` in memory_vector (binary COPY).

    ``tenant_key`` is the rows' tenant, or a mapping from row id to tenant key.
    """
    write_chunk_vectors(
        conn, tenant_key, model_id, [(r.id, r.chunk_texts, r.vectors) for r in rows]
    )


def write_chunk_vectors(
    conn: psycopg.Connection,
    tenant_key: str | Mapping[int, str],
    model_id: str,
    rows: Sequence[tuple[int, Sequence[str], np.ndarray]],
) -> None:
    """:func:`write_vectors` for (row id, chunk texts, one vector per chunk) triples."""
    fresh = list(rows)
    if not fresh:
        return
    conn.execute(
        "DELETE FROM memory_vector WHERE log_id = ANY(%s) AND embedding_model = %s",
        ([log_id for log_id, _, _ in fresh], model_id),
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY memory_vector (log_id, embedding_model, chunk_index, tenant_key, chunk_text, embedding)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "text", "int4", "text", "text", "vector"])
        for log_id, texts, vectors in fresh:
            key = tenant_key if isinstance(tenant_key, str) else tenant_key[log_id]
            for index, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
                copy.write_row((log_id, model_id, index, key, text, vector))


def mark_embedded(
    conn: psycopg.Connection, model_id: str, rows: Sequence[EmbeddedRow | UnchangedRow]
) -> None:
    """Record text, hash, first-chunk vector and ``embedded`` status for the rows."""
    if not rows:
        return
    conn.execute(
        """UPDATE memory_log AS m
           SET status = 'embedded', search_text = u.search_text, text_truncated = u.truncated,
               memory_type = u.memory_type, occurred_at = u.occurred_at,
               content_hash = u.content_hash, embedding_model = %s, chunk_count = u.chunk_count,
               embedding = v.embedding, last_error = NULL, next_attempt_at = NULL,
               embedded_at = CASE WHEN u.reused THEN coalesce(m.embedded_at, now()) ELSE now() END
           FROM unnest(%s::bigint[], %s::text[], %s::bool[], %s::text[], %s::timestamptz[],
                       %s::text[], %s::int[], %s::bool[])
                AS u(id, search_text, truncated, memory_type, occurred_at, content_hash,
                     chunk_count, reused)
           LEFT JOIN memory_vector AS v
                  ON v.log_id = u.id AND v.chunk_index = 0 AND v.embedding_model = %s
           WHERE m.id = u.id""",
        (
            model_id,
            [r.id for r in rows],
            [r.search_text for r in rows],
            [r.text_truncated for r in rows],
            [r.memory_type for r in rows],
            [r.occurred_at for r in rows],
            [r.content_hash for r in rows],
            [r.chunk_count for r in rows],
            [isinstance(r, UnchangedRow) for r in rows],
            model_id,
        ),
    )


def mark_skipped(conn: psycopg.Connection, skipped: Sequence[SkippedRow]) -> None:
    """Record ``skipped`` with its reason; drop the rows' vectors."""
    if not skipped:
        return
    ids = [s.id for s in skipped]
    conn.execute("DELETE FROM memory_vector WHERE log_id = ANY(%s)", (ids,))
    conn.execute(
        """UPDATE memory_log AS m
           SET status = 'skipped', last_error = u.reason, memory_type = u.memory_type,
               occurred_at = u.occurred_at, search_text = NULL, content_hash = NULL,
               embedding = NULL, embedding_model = NULL, chunk_count = 0,
               next_attempt_at = NULL
           FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[])
                AS u(id, reason, memory_type, occurred_at)
           WHERE m.id = u.id""",
        (
            ids,
            [s.reason[:2000] for s in skipped],
            [s.memory_type for s in skipped],
            [s.occurred_at for s in skipped],
        ),
    )


def mark_failed(
    conn: psycopg.Connection,
    failures: Sequence[FailedRow],
    *,
    max_attempts: int,
    backoff_seconds: float,
) -> dict[int, str]:
    """Count an attempt for each row: ``failed`` with backoff, or ``dead`` when attempts are spent.

    Returns the new status of each row id.
    """
    if not failures:
        return {}
    rows = conn.execute(
        """UPDATE memory_log AS m
           SET attempts = m.attempts + 1,
               last_error = u.error,
               status = CASE WHEN m.attempts + 1 >= %s THEN 'dead' ELSE 'failed' END,
               next_attempt_at = CASE WHEN m.attempts + 1 >= %s THEN NULL
                    ELSE now() + make_interval(secs => %s * power(2, m.attempts)) END
           FROM unnest(%s::bigint[], %s::text[]) AS u(id, error)
           WHERE m.id = u.id
           RETURNING m.id, m.status""",
        (
            max_attempts,
            max_attempts,
            backoff_seconds,
            [f.id for f in failures],
            [f.error[:2000] for f in failures],
        ),
    ).fetchall()
    return {int(r["id"]): r["status"] for r in rows}
