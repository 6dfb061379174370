"""Bulk loading for benchmark setup: pending rows through COPY, and ready-made vectors.

Setup is not what is measured, so it takes the fastest honest path: ``COPY`` into
``memory_log`` (the table's triggers still derive tenant keys and register tenants), and for
search benchmarks vectors written straight into ``memory_vector`` and Chroma with the same ids,
columns and metadata the store step writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from memory_pipeline.extraction import ExtractedMemory
from memory_pipeline.processing import content_hash
from memory_pipeline.storage.database import Database
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, vector_id

#: Chroma accepts at most ~5,461 vectors per call (DESIGN §7).
CHROMA_BATCH = 5000
#: When a synthetic memory happened if its document names no time.
FALLBACK_OCCURRED_AT = datetime(2025, 1, 1, tzinfo=UTC)


def copy_pending_rows(
    conn: psycopg.Connection, rows: Iterable[tuple[Tenant, dict[str, Any], str | None]]
) -> int:
    """COPY ``(tenant, raw_data, external_id)`` rows into memory_log as ``pending``; return count.

    The caller owns the transaction, so many rows can land in one commit.
    """
    count = 0
    with (
        conn.cursor() as cur,
        cur.copy("COPY memory_log (user_id, project_id, raw_data, external_id) FROM STDIN") as copy,
    ):
        for tenant, raw_data, external_id in rows:
            copy.write_row((tenant.user_id, tenant.project_id, Jsonb(raw_data), external_id))
            count += 1
    return count


def ids_by_external_id(conn: psycopg.Connection, tenant: Tenant) -> dict[str, int]:
    """The tenant's row ids by external id."""
    rows = conn.execute(
        "SELECT id, external_id FROM memory_log WHERE tenant_key = %s AND external_id IS NOT NULL",
        (tenant.key,),
    ).fetchall()
    return {r["external_id"]: int(r["id"]) for r in rows}


@dataclass(frozen=True)
class ReadyMemory:
    """A memory to load as already embedded: its text and its one (chunk 0) vector."""

    external_id: str
    raw_data: dict[str, Any]
    search_text: str
    memory_type: str
    occurred_at: datetime
    content_hash: str

    @classmethod
    def of(
        cls,
        external_id: str,
        raw_data: dict[str, Any],
        extracted: ExtractedMemory,
        model_id: str,
        search_text: str | None = None,
    ) -> ReadyMemory:
        """The memory the store step would make of ``raw_data`` (``search_text``: its text, or
        the chunk it is given); a document that names no time gets :data:`FALLBACK_OCCURRED_AT`."""
        text = extracted.text if search_text is None else search_text
        return cls(
            external_id=external_id,
            raw_data=raw_data,
            search_text=text,
            memory_type=extracted.memory_type,
            occurred_at=extracted.occurred_at or FALLBACK_OCCURRED_AT,
            content_hash=content_hash(text, model_id),
        )


def load_embedded_memories(
    db: Database,
    store: ChromaVectorStore,
    model_id: str,
    tenant: Tenant,
    memories: Sequence[ReadyMemory],
    vectors: np.ndarray,
) -> list[int]:
    """Load memories as ``embedded`` with one vector each, in Postgres and Chroma; return ids.

    Rows go in by COPY, vectors by binary COPY into memory_vector, then one UPDATE marks the
    rows embedded (the insert trigger always makes new rows pending); Chroma gets the same
    vector ids and metadata in batches of at most ``CHROMA_BATCH``.
    """
    with db.connection() as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY memory_log (user_id, project_id, raw_data, external_id, search_text,"
                " memory_type, occurred_at, occurred_at_explicit, content_hash, embedding_model,"
                " chunk_count) FROM STDIN"
            ) as copy,
        ):
            for m in memories:
                copy.write_row(
                    (
                        tenant.user_id,
                        tenant.project_id,
                        Jsonb(m.raw_data),
                        m.external_id,
                        m.search_text,
                        m.memory_type,
                        m.occurred_at,
                        True,
                        m.content_hash,
                        model_id,
                        1,
                    )
                )
        by_external = ids_by_external_id(conn, tenant)
        ids = [by_external[m.external_id] for m in memories]
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY memory_vector (log_id, embedding_model, chunk_index, tenant_key, chunk_text,"
                " embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int8", "text", "int4", "text", "text", "vector"])
            for log_id, m, vector in zip(ids, memories, vectors, strict=True):
                copy.write_row((log_id, model_id, 0, tenant.key, m.search_text, vector))
        conn.execute(
            """UPDATE memory_log AS m
               SET status = 'embedded', embedded_at = now(), embedding = v.embedding
               FROM memory_vector AS v
               WHERE m.id = ANY(%s) AND v.log_id = m.id AND v.chunk_index = 0
                 AND v.embedding_model = %s""",
            (ids, model_id),
        )
    for start in range(0, len(ids), CHROMA_BATCH):
        part = slice(start, start + CHROMA_BATCH)
        metadatas = [
            {
                "log_id": log_id,
                "chunk_index": 0,
                "user_id": tenant.user_id,
                "project_id": tenant.project_id,
                "memory_type": m.memory_type,
                "occurred_at": m.occurred_at.astimezone(UTC).timestamp(),
                "embedding_model": model_id,
            }
            for log_id, m in zip(ids[part], memories[part], strict=True)
        ]
        store.upsert_vectors(
            tenant, model_id, [vector_id(i, 0) for i in ids[part]], vectors[part], metadatas
        )
    return ids
