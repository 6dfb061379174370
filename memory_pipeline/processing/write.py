"""The last steps of a batch: vectors to Chroma first, then rows and vectors to Postgres.

Chroma is written before Postgres and by vector id, so a crash in between leaves the rows
pending (their transaction rolls back) and the rerun overwrites the same ids: nothing is lost
and nothing is duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import psycopg

from memory_pipeline.processing.options import ProcessCounts, ProcessOptions
from memory_pipeline.storage import row_outcomes
from memory_pipeline.storage.claims import ClaimedRow
from memory_pipeline.storage.row_outcomes import BatchOutcome, FailedRow
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import (
    ChromaVectorStore,
    VectorStoreUnavailable,
    is_shard_collection,
    vector_id,
    vector_metadata,
)

logger = logging.getLogger(__name__)


@dataclass
class _TenantVectors:
    ids: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    metadatas: list[dict[str, str | int | float]] = field(default_factory=list)
    stale_ids: list[str] = field(default_factory=list)


def _vectors_by_tenant(
    rows: Sequence[ClaimedRow], model_id: str, tenants: Mapping[str, Tenant], outcome: BatchOutcome
) -> dict[str, _TenantVectors]:
    claimed = {row.id: row for row in rows}
    by_tenant: dict[str, _TenantVectors] = {}
    for e in outcome.embedded:
        row = claimed[e.id]
        tv = by_tenant.setdefault(row.tenant_key, _TenantVectors())
        for index in range(e.chunk_count):
            tv.ids.append(vector_id(e.id, index))
            tv.metadatas.append(
                vector_metadata(
                    tenants[row.tenant_key], model_id, e.id, index, e.memory_type, e.occurred_at
                )
            )
        tv.vectors.append(e.vectors)
        # a re-embedded memory with fewer chunks than before: its extra old vectors go
        tv.stale_ids.extend(vector_id(e.id, n) for n in range(e.chunk_count, row.chunk_count))
    for s in outcome.skipped:  # rows that had vectors before and lost their text
        row = claimed[s.id]
        if row.chunk_count:
            tv = by_tenant.setdefault(row.tenant_key, _TenantVectors())
            tv.stale_ids.extend(vector_id(s.id, n) for n in range(row.chunk_count))
    return by_tenant


def write_chroma(
    store: ChromaVectorStore,
    tenants: Mapping[str, Tenant],
    model_id: str,
    rows: Sequence[ClaimedRow],
    outcome: BatchOutcome,
    collection_name: str | None = None,
) -> None:
    """Upsert the batch's new vectors (one upsert per collection: a shard's tenants share
    theirs) and delete its stale ones.

    A tenant whose collection refuses the write (``ValueError``: it belongs to another tenant
    or model) has its rows of the batch moved to ``outcome.failed``; so does a tenant whose
    write fails while other tenants' writes succeed. When every tenant's write fails, Chroma
    is taken to be down: ``VectorStoreUnavailable`` is raised and no row is marked.
    """
    by_tenant = _vectors_by_tenant(rows, model_id, tenants, outcome)
    errors: dict[str, Exception] = {}
    # the tenants of a shard share its collection: one upsert for all of them (decision 0203)
    by_collection: dict[str, list[str]] = {}
    for key, tv in by_tenant.items():
        if tv.ids:
            name = collection_name or store.live_collection_name(tenants[key], model_id)
            by_collection.setdefault(name if is_shard_collection(name) else key, []).append(key)
    for keys in by_collection.values():
        group = [by_tenant[k] for k in keys]
        try:
            store.upsert_vectors(
                tenants[keys[0]],
                model_id,
                [i for tv in group for i in tv.ids],
                np.concatenate([v for tv in group for v in tv.vectors]),
                [m for tv in group for m in tv.metadatas],
                collection_name=collection_name,
            )
        except (VectorStoreUnavailable, ValueError) as exc:
            errors.update(dict.fromkeys(keys, exc))
    for key, tv in by_tenant.items():
        if key in errors:
            continue
        try:
            if tv.stale_ids:
                store.delete_vectors(
                    tenants[key],
                    tv.stale_ids,
                    collection_name=collection_name
                    or store.live_collection_name(tenants[key], model_id),
                )
        except (VectorStoreUnavailable, ValueError) as exc:
            errors[key] = exc
    unavailable = [e for e in errors.values() if isinstance(e, VectorStoreUnavailable)]
    if unavailable and len(errors) == len(by_tenant):
        raise unavailable[0]
    if errors:
        _fail_tenants(rows, outcome, errors)


def _fail_tenants(
    rows: Sequence[ClaimedRow], outcome: BatchOutcome, errors: Mapping[str, Exception]
) -> None:
    """Move the rows of the tenants in ``errors`` from their outcome to ``failed``."""
    failing = {row.id: errors[row.tenant_key] for row in rows if row.tenant_key in errors}
    for key, exc in errors.items():
        logger.warning("Chroma write of tenant %s failed: %s", key, exc)
    for group in (outcome.embedded, outcome.unchanged, outcome.skipped):
        group[:] = [r for r in group if r.id not in failing]
    already = {f.id for f in outcome.failed}
    outcome.failed.extend(
        FailedRow(rid, f"vector store write failed: {exc}")
        for rid, exc in failing.items()
        if rid not in already
    )


def write_postgres(
    conn: psycopg.Connection,
    rows: Sequence[ClaimedRow],
    model_id: str,
    outcome: BatchOutcome,
    options: ProcessOptions,
) -> dict[str, ProcessCounts]:
    """Record every row's outcome in the claiming transaction; return counts per tenant key."""
    tenant_of_row = {row.id: row.tenant_key for row in rows}
    row_outcomes.write_vectors(conn, tenant_of_row, model_id, outcome.embedded)
    row_outcomes.mark_embedded(conn, model_id, [*outcome.embedded, *outcome.unchanged])
    row_outcomes.mark_skipped(conn, outcome.skipped)
    failed_states = row_outcomes.mark_failed(
        conn,
        outcome.failed,
        max_attempts=options.max_attempts,
        backoff_seconds=options.retry_backoff_seconds,
    )
    counts = {key: ProcessCounts() for key in tenant_of_row.values()}
    for e in outcome.embedded:
        counts[tenant_of_row[e.id]].embedded += 1
    for u in outcome.unchanged:
        counts[tenant_of_row[u.id]].embedded += 1
        counts[tenant_of_row[u.id]].unchanged += 1
    for s in outcome.skipped:
        counts[tenant_of_row[s.id]].skipped += 1
    for rid, state in failed_states.items():
        tenant_counts = counts[tenant_of_row[rid]]
        if state == "dead":
            tenant_counts.dead += 1
        else:
            tenant_counts.failed += 1
    return counts
