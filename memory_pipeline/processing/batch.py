"""One batch of claimed rows: prepare → embed → write Chroma → write Postgres."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import psycopg

from memory_pipeline.embedding import Embedder
from memory_pipeline.processing.embed import embed_rows
from memory_pipeline.processing.options import ProcessCounts, ProcessOptions
from memory_pipeline.processing.prepare import prepare_rows
from memory_pipeline.processing.write import write_chroma, write_postgres
from memory_pipeline.storage.claims import ClaimedRow
from memory_pipeline.storage.row_outcomes import BatchOutcome, EmbeddedRow, write_vectors
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """Counts per tenant key, and per tenant key the rows that joined the searchable set with
    new text (what the keyword index takes in)."""

    counts: dict[str, ProcessCounts]
    fresh: dict[str, list[int]]


def _second_stage_vectors(embedder: Embedder | None, outcome: BatchOutcome) -> list[EmbeddedRow]:
    """The embedded rows' chunks encoded by the second-stage model, one call for the batch."""
    if embedder is None or not outcome.embedded:
        return []
    flat = [text for e in outcome.embedded for text in e.chunk_texts]
    vectors = embedder.embed_batch(flat)
    out, start = [], 0
    for e in outcome.embedded:
        out.append(replace(e, vectors=vectors[start : start + e.chunk_count]))
        start += e.chunk_count
    return out


def process_batch(
    conn: psycopg.Connection,
    rows: Sequence[ClaimedRow],
    tenants: Mapping[str, Tenant],
    embedder: Embedder,
    store: ChromaVectorStore,
    options: ProcessOptions,
    collection_name: str | None = None,
) -> BatchResult:
    """Process rows claimed in ``conn``'s transaction, of one or more tenants, in one encode call.

    ``collection_name`` (a model rollout) needs one tenant.
    """
    model_id = embedder.model_id
    prepared = prepare_rows(rows, model_id, embedder.chunk_text, options.max_document_bytes)
    embedded, embed_failures = embed_rows(embedder, prepared.to_embed)
    outcome = prepared.settled
    outcome.embedded.extend(embedded)
    outcome.failed.extend(embed_failures)
    second = _second_stage_vectors(options.second_stage, outcome)
    write_chroma(store, tenants, model_id, rows, outcome, collection_name)
    if options.after_vector_upsert is not None:
        options.after_vector_upsert([e.id for e in outcome.embedded])
    counts = write_postgres(conn, rows, model_id, outcome, options)
    if second:  # in the claiming transaction: both vector sets commit with the row or neither
        kept = {e.id for e in outcome.embedded}
        tenant_of = {row.id: row.tenant_key for row in rows}
        write_vectors(
            conn, tenant_of, options.second_stage.model_id, [r for r in second if r.id in kept]
        )
    tenant_of_row = {row.id: row.tenant_key for row in rows}
    for f in outcome.failed:
        logger.warning(
            "memory %s of tenant %s failed: %s", f.id, tenants[tenant_of_row[f.id]], f.error
        )
    was_embedded = {row.id for row in rows if row.status == "embedded"}
    fresh: dict[str, list[int]] = {}
    for e in outcome.embedded:
        if e.id not in was_embedded:
            fresh.setdefault(tenant_of_row[e.id], []).append(e.id)
    return BatchResult(counts, fresh)
