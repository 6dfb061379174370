"""The application's processing entry (:func:`process`) and its two paths: one tenant, or many
tenants whose rows share encode calls.

Each batch runs in one Postgres transaction that holds its rows locked (``FOR UPDATE SKIP
LOCKED``), so overlapping runs never share a row, and a crash anywhere leaves the batch's rows
as they were for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from memory_pipeline.embedding import Embedder
from memory_pipeline.keyword_index import compact_term_stats, refresh_keyword_index
from memory_pipeline.processing.batch import process_batch
from memory_pipeline.processing.options import ProcessCounts, ProcessOptions
from memory_pipeline.processing.rollout import switch_when_complete
from memory_pipeline.processing.second_stage import backfill_second_stage
from memory_pipeline.processing.shard_moves import move_to_shard
from memory_pipeline.processing.tombstones import apply_tombstones
from memory_pipeline.storage import claims, live_models, tenant_layout, tombstones
from memory_pipeline.storage.claims import ClaimedRow
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.tenant_locks import shared_tenant_lock, shared_tenant_locks
from memory_pipeline.storage.vector_indexes import ensure_model_index
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore

#: Claims the next batch of rows after a row id, in the caller's transaction.
Claim = Callable[[psycopg.Connection, int], list[ClaimedRow]]


@dataclass
class ProcessResult:
    """Counts per tenant key of one :func:`process` call."""

    per_tenant: dict[str, ProcessCounts]

    @property
    def total(self) -> ProcessCounts:
        return ProcessCounts.total(self.per_tenant.values())


def process(
    db: Database,
    store: ChromaVectorStore,
    embedder: Embedder,
    tenants: Sequence[Tenant] | None,
    options: ProcessOptions,
) -> ProcessResult:
    """Process the pending work of ``tenants`` (``None``: every tenant with work).

    What both front doors (``MemoryStore.process_pending`` and the Dagster asset) call. Raises
    ``VectorStoreUnavailable`` or a psycopg error when a store fails; the rows of the batch in
    flight stay as they were for the next run.
    """
    with db.connection() as conn:
        layout = tenant_layout.read_layout(conn)
        if tenants is None:
            tenants = [w.tenant for w in claims.workable_tenants(conn)]
            if layout.sharded:  # moving into the shards is work too
                tenants += tenant_layout.tenants_to_move(conn)
    keys = list(dict.fromkeys(t.key for t in tenants))
    if layout.sharded:  # tenants without vectors need no move: placed in bulk, chunk by chunk
        with db.autocommit_connection() as conn:
            tenant_layout.place_tenants_without_vectors(conn, layout, keys)
    with db.connection() as conn:
        unplaced = set(tenant_layout.unplaced_tenants(conn, layout, keys))
        tenants = tenant_layout.placed(conn, list({t.key: t for t in tenants}.values()))
    if not tenants:
        return ProcessResult({})
    tenants = [
        move_to_shard(db, store, t, layout.shard_of(t.key)) if t.key in unplaced else t
        for t in tenants
    ]
    ensure_model_index(db.url, embedder.model_id, embedder.dimension, embedder.model_source)
    if len(tenants) == 1:
        only = tenants[0]
        per_tenant = {only.key: process_tenant(db, store, embedder, only, options)}
    else:
        per_tenant = process_tenants(db, store, embedder, tenants, options)
    for key in unplaced:
        per_tenant[key].moved = 1
    for tenant in tenants:
        backfill_second_stage(db, tenant, options)
    return ProcessResult(per_tenant)


def process_tenant(
    db: Database,
    store: ChromaVectorStore,
    embedder: Embedder,
    tenant: Tenant,
    options: ProcessOptions | None = None,
) -> ProcessCounts:
    """Process every workable row of ``tenant`` (each at most once) and apply its tombstones.

    When the configured model differs from the tenant's live model, the tenant's vectors are
    rebuilt aside for the new model (new and changed rows included) and searches switch to them
    once every row has them.
    """
    options = options or ProcessOptions()
    model_id = embedder.model_id
    with db.connection() as conn:
        live_model = live_models.live_model_of(conn, tenant.key)
    rolling_out = live_model is not None and live_model != model_id
    target = store.building_collection_name(tenant, model_id) if rolling_out else None
    live = store.live_collection_name(tenant, live_model or model_id)

    counts = ProcessCounts()
    fresh: list[int] = []
    counts.deleted = apply_tombstones(db, store, tenant, [live, target] if target else [live])

    def run(claim: Claim) -> None:
        _run_batches(db, store, embedder, tenant, options, claim, target, counts, fresh)

    run(lambda conn, after: claims.claim_workable_rows(conn, tenant.key, options.batch_rows, after))
    if rolling_out:
        before = counts.embedded
        run(
            lambda conn, after: claims.claim_rows_missing_model(
                conn, tenant.key, model_id, options.batch_rows, after
            )
        )
        counts.reembedded = counts.embedded - before
        counts.embedded = before
        counts.switched = int(switch_when_complete(db, store, tenant, model_id, live_model))
    with db.connection() as conn:
        refresh_keyword_index(conn, {tenant.key: fresh})
    return counts


def _run_batches(
    db: Database,
    store: ChromaVectorStore,
    embedder: Embedder,
    tenant: Tenant,
    options: ProcessOptions,
    claim: Claim,
    collection_name: str | None,
    counts: ProcessCounts,
    fresh: list[int],
) -> None:
    """Claim and process batches of one tenant until ``claim`` finds nothing more."""
    last_id = 0
    while True:
        with db.connection() as conn, conn.transaction():
            shared_tenant_lock(conn, tenant)  # repair, purge and model switches take it exclusively
            placed = _placed_now(conn, [tenant])
            rows = claim(conn, last_id)
            if not rows:
                return
            last_id = rows[-1].id
            result = process_batch(
                conn,
                rows,
                placed,
                embedder,
                store,
                options,
                collection_name,
            )
            batch = result.counts.get(tenant.key, ProcessCounts())
            if batch.embedded and collection_name is None:
                live_models.adopt_live_model(conn, [tenant.key], embedder.model_id)
            counts.add(batch)
        if options.on_batch is not None:
            options.on_batch(batch)
        fresh.extend(result.fresh.get(tenant.key, []))
        with db.connection() as conn:  # keep the keyword statistics' delta log short
            compact_term_stats(conn, [tenant.key])


def _placed_now(conn: psycopg.Connection, tenants: Sequence[Tenant]) -> dict[str, Tenant]:
    """The tenants placed as the claiming transaction sees them, read once it holds their
    shared locks: no move into a shard can change where their vectors go until it commits."""
    return {t.key: t for t in tenant_layout.placed(conn, tenants)}


def process_tenants(
    db: Database,
    store: ChromaVectorStore,
    embedder: Embedder,
    tenants: Sequence[Tenant],
    options: ProcessOptions | None = None,
) -> dict[str, ProcessCounts]:
    """Process many tenants in one go; returns counts per tenant key.

    Rows of different tenants are claimed and embedded together, so a thousand small tenants
    cost a few large encode calls, not a thousand small ones. Each tenant's vectors still go to
    its own collection. Tenants in a model rollout take the per-tenant path.
    """
    options = options or ProcessOptions()
    results = {t.key: ProcessCounts() for t in tenants}
    together: dict[str, Tenant] = {}
    keys = [t.key for t in tenants]
    with db.connection() as conn:
        live = live_models.live_models_of(conn, keys)
        with_tombstones = tombstones.tenants_with_tombstones(conn, keys)
    for tenant in tenants:
        if live[tenant.key] not in (None, embedder.model_id):
            results[tenant.key] = process_tenant(db, store, embedder, tenant, options)
        else:
            if tenant.key in with_tombstones:
                collection = store.live_collection_name(tenant, embedder.model_id)
                results[tenant.key].deleted = apply_tombstones(db, store, tenant, [collection])
            together[tenant.key] = tenant
    fresh: dict[str, list[int]] = {key: [] for key in together}
    after: tuple[str, int] = ("", 0)
    while together:
        with db.connection() as conn, conn.transaction():
            shared_tenant_locks(conn, list(together))
            placed = _placed_now(conn, list(together.values()))
            rows = claims.claim_workable_rows_of_tenants(
                conn, list(together), options.batch_rows, after
            )
            if not rows:
                break
            after = (rows[-1].tenant_key, rows[-1].id)
            result = process_batch(conn, rows, placed, embedder, store, options)
            done = [key for key, c in result.counts.items() if c.embedded]
            if done:
                live_models.adopt_live_model(conn, done, embedder.model_id)
            for key, c in result.counts.items():
                results[key].add(c)
        if options.on_batch is not None:
            options.on_batch(ProcessCounts.total(result.counts.values()))
        for key, ids in result.fresh.items():
            fresh[key].extend(ids)
        with db.connection() as conn:  # keep the keyword statistics' delta log short
            compact_term_stats(conn, list(result.counts))
    if together:
        with db.connection() as conn:
            refresh_keyword_index(conn, fresh)
    return results
