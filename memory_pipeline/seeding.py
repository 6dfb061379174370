"""Seeding: tenants of many memories without running the model (tests, benchmarks, fixtures).

Rows go in by ``COPY`` as the application would write them (the table's triggers derive tenant
keys and register tenants); ready-made memories then get their vectors and ``embedded`` state
through the store step's own writes (:func:`~memory_pipeline.storage.row_outcomes.write_vectors`,
:func:`~memory_pipeline.storage.row_outcomes.mark_embedded`) and Chroma gets the same ids and
metadata, so a seeded memory is indistinguishable from one the pipeline embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memory_pipeline.extraction import ExtractedMemory
from memory_pipeline.processing import content_hash
from memory_pipeline.storage import memory_reads, memory_writes, row_outcomes, tenant_layout
from memory_pipeline.storage.database import Database
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, vector_id, vector_metadata

#: When a seeded memory happened if its document names no time.
FALLBACK_OCCURRED_AT = datetime(2025, 1, 1, tzinfo=UTC)


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
    *,
    second_stage: tuple[str, np.ndarray] | None = None,
) -> list[int]:
    """Load memories as ``embedded`` by ``model_id``, one vector each, in Postgres and Chroma;
    with ``second_stage`` (its model id and vectors) their second-stage vectors too, in
    Postgres only, where the second stage reads them (docs/decisions/0153).

    Returns their ids in the order of ``memories``. External ids must be new in the tenant.
    """
    with db.connection() as conn:
        memory_writes.copy_pending_rows(
            conn, ((tenant, m.raw_data, m.external_id) for m in memories)
        )
        tenant = tenant_layout.placed(conn, [tenant])[0]  # its shard, in a sharded home
        by_external = memory_reads.ids_by_external_id(conn, tenant.key)
        ids = [by_external[m.external_id] for m in memories]
        rows = [
            row_outcomes.EmbeddedRow(
                id=log_id,
                search_text=m.search_text,
                text_truncated=False,
                memory_type=m.memory_type,
                occurred_at=m.occurred_at,
                content_hash=m.content_hash,
                chunk_texts=(m.search_text,),
                vectors=vectors[k : k + 1],
            )
            for k, (log_id, m) in enumerate(zip(ids, memories, strict=True))
        ]
        row_outcomes.write_vectors(conn, tenant.key, model_id, rows)
        if second_stage is not None:
            second_model, second_vectors = second_stage
            row_outcomes.write_chunk_vectors(
                conn,
                tenant.key,
                second_model,
                [(r.id, r.chunk_texts, second_vectors[k : k + 1]) for k, r in enumerate(rows)],
            )
        row_outcomes.mark_embedded(conn, model_id, rows)
    metadatas = [
        vector_metadata(tenant, model_id, log_id, 0, m.memory_type, m.occurred_at)
        for log_id, m in zip(ids, memories, strict=True)
    ]
    store.upsert_vectors(tenant, model_id, [vector_id(i, 0) for i in ids], vectors, metadatas)
    return ids
