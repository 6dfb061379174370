"""The store step (DESIGN §4): claim → extract → batch embed → upsert Chroma → write Postgres.

Each batch runs in one Postgres transaction that holds its rows locked (``FOR UPDATE SKIP
LOCKED``). Chroma is written before Postgres and by vector id, so a crash anywhere leaves the rows
pending (the transaction rolls back) and the rerun overwrites the same ids: nothing is lost and
nothing is duplicated. A failure of one row marks only that row.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from memory_pipeline.embedding import Embedder
from memory_pipeline.extraction import extract_memory
from memory_pipeline.storage import memory_logs as q
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.tenant_locks import shared_tenant_lock, tenant_lock
from memory_pipeline.storage.term_stats import compact_term_stats, refresh_keyword_index
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, vector_id, vector_metadata

logger = logging.getLogger(__name__)


@dataclass
class ProcessCounts:
    """How the rows of one or more runs ended (DESIGN §5 ``process_pending``)."""

    embedded: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    unchanged: int = 0  # embedded rows whose content hash matched: nothing re-embedded
    deleted: int = 0  # tombstones applied to Chroma
    reembedded: int = 0  # rows given vectors of a newly configured model (a rollout)
    switched: int = 0  # 1 when this run switched the tenant's searches to the new model

    def add(self, other: ProcessCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class ProcessOptions:
    """Knobs of the store step."""

    batch_rows: int = 512
    max_attempts: int = 5
    retry_backoff_seconds: float = 30.0
    max_document_bytes: int = 1024 * 1024
    #: Called after the Chroma upsert and before the Postgres write (fault injection in tests).
    after_vector_upsert: Callable[[Sequence[int]], None] | None = field(default=None, compare=False)
    #: Called with each committed batch's counts (progress in the Dagster run log).
    on_batch: Callable[[ProcessCounts], None] | None = field(default=None, compare=False)


def content_hash(search_text: str, model_id: str) -> str:
    """Hash of what gets embedded and by which model: unchanged hash, no re-embed."""
    return hashlib.sha256(f"{model_id}\n{search_text}".encode()).hexdigest()


def _occurred_at(row: q.ClaimedRow, extracted: datetime | None) -> datetime:
    if row.occurred_at_explicit:
        return row.occurred_at
    return extracted or row.created_at


def apply_tombstones(
    db: Database, store: ChromaVectorStore, tenant: Tenant, extra_collections: Sequence[str] = ()
) -> int:
    """Remove deleted memories' vectors from Chroma, then forget their tombstones."""
    with db.connection() as conn, conn.transaction():
        shared_tenant_lock(conn, tenant)
        log_ids = q.take_tombstones(conn, tenant.key)
        if log_ids:
            for name in (None, *extra_collections):
                store.delete_memories(tenant, log_ids, collection_name=name)
            q.clear_tombstones(conn, log_ids)
    return len(log_ids)


def _embed_isolating_failures(
    embedder: Embedder, texts_per_row: dict[int, list[str]]
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Vectors per row id; rows whose texts cannot be embedded are returned as errors instead."""
    ids = list(texts_per_row)
    flat = [text for rid in ids for text in texts_per_row[rid]]
    try:
        vectors = embedder.embed_batch(flat)
    except Exception as batch_error:  # one bad row must not fail its batch: retry row by row
        logger.warning("batch embedding failed (%s); isolating the failing rows", batch_error)
        good: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        for rid in ids:
            try:
                good[rid] = embedder.embed_batch(texts_per_row[rid])
            except Exception as exc:
                errors[rid] = f"embedding failed: {type(exc).__name__}: {exc}"
        return good, errors
    out: dict[int, np.ndarray] = {}
    start = 0
    for rid in ids:
        n = len(texts_per_row[rid])
        out[rid] = vectors[start : start + n]
        start += n
    return out, {}


def _process_batch(
    conn: object,
    rows: Sequence[q.ClaimedRow],
    tenants: Mapping[str, Tenant],
    embedder: Embedder,
    store: ChromaVectorStore,
    options: ProcessOptions,
    collection_name: str | None = None,
) -> tuple[dict[str, ProcessCounts], dict[str, list[int]]]:
    """Process claimed rows of one or more tenants; their texts are embedded in one call.

    Returns the counts per tenant key, and per tenant key the rows that joined the searchable
    set with new text (what the keyword index takes in). ``collection_name`` (a model rollout)
    needs one tenant.
    """
    model_id = embedder.model_id
    skipped: list[tuple[int, str, str, datetime]] = []
    failures: list[tuple[int, str]] = []
    to_embed: dict[int, list[str]] = {}
    prepared: dict[int, tuple[q.ClaimedRow, str, bool, str, datetime, str]] = {}
    reused: list[q.EmbeddedRow] = []
    tenant_of_row = {row.id: row.tenant_key for row in rows}

    for row in rows:
        try:
            if row.raw_bytes > options.max_document_bytes:
                reason = (
                    f"raw_data is {row.raw_bytes} bytes; the limit is {options.max_document_bytes}"
                )
                skipped.append((row.id, reason, "other", _occurred_at(row, None)))
                continue
            extracted = extract_memory(row.raw_data)
            occurred = _occurred_at(row, extracted.occurred_at)
            if not extracted.text:
                reason = extracted.skip_reason or "no text to embed"
                skipped.append((row.id, reason, extracted.memory_type, occurred))
                continue
            digest = content_hash(extracted.text, model_id)
            if (
                digest == row.content_hash
                and row.embedding_model == model_id
                and row.chunk_count > 0
            ):
                reused.append(
                    q.EmbeddedRow(
                        row.id,
                        extracted.text,
                        extracted.truncated,
                        extracted.memory_type,
                        occurred,
                        digest,
                        [""] * row.chunk_count,
                        np.zeros((row.chunk_count, 0)),
                        reused=True,
                    )
                )
                continue
            to_embed[row.id] = embedder.chunk_text(extracted.text)
            prepared[row.id] = (
                row,
                extracted.text,
                extracted.truncated,
                extracted.memory_type,
                occurred,
                digest,
            )
        except Exception as exc:  # extraction promises not to raise; stay safe if it does
            failures.append((row.id, f"extraction failed: {type(exc).__name__}: {exc}"))

    vectors, embed_errors = _embed_isolating_failures(embedder, to_embed) if to_embed else ({}, {})
    failures.extend(embed_errors.items())

    embedded: list[q.EmbeddedRow] = []
    # per tenant: vector ids, vectors and metadata to upsert; vector ids to delete
    upserts: dict[str, tuple[list[str], list[np.ndarray], list[dict[str, str | int | float]]]] = {}
    stale: dict[str, list[str]] = {}
    for rid, row_vectors in vectors.items():
        row, text, truncated, memory_type, occurred, digest = prepared[rid]
        tenant = tenants[row.tenant_key]
        chunks = to_embed[rid]
        embedded.append(
            q.EmbeddedRow(rid, text, truncated, memory_type, occurred, digest, chunks, row_vectors)
        )
        ids, vecs, metas = upserts.setdefault(row.tenant_key, ([], [], []))
        for index in range(len(chunks)):
            ids.append(vector_id(rid, index))
            metas.append(vector_metadata(tenant, model_id, rid, index, memory_type, occurred))
        vecs.append(row_vectors)
        # a re-embedded memory with fewer chunks than before: its extra old vectors go
        stale.setdefault(row.tenant_key, []).extend(
            vector_id(rid, n) for n in range(len(chunks), row.chunk_count)
        )

    # Skipped rows that had vectors before (their text went away) leave Chroma too.
    had_vectors = {r.id: r.chunk_count for r in rows if r.chunk_count > 0}
    for rid, *_ in skipped:
        stale.setdefault(tenant_of_row[rid], []).extend(
            vector_id(rid, n) for n in range(had_vectors.get(rid, 0))
        )

    for key, (ids, vecs, metas) in upserts.items():
        store.upsert_vectors(
            tenants[key],
            model_id,
            ids,
            np.concatenate(vecs),
            metas,
            collection_name=collection_name,
        )
    for key, stale_ids in stale.items():
        if stale_ids:
            store.delete_vectors(tenants[key], stale_ids, collection_name=collection_name)
    if options.after_vector_upsert is not None:
        options.after_vector_upsert([e.id for e in embedded])

    q.write_vectors(conn, tenant_of_row, model_id, embedded)  # type: ignore[arg-type]
    q.mark_embedded(conn, model_id, [*embedded, *reused])  # type: ignore[arg-type]
    q.mark_skipped(conn, skipped)  # type: ignore[arg-type]
    failed_states = q.mark_failed(
        conn,  # type: ignore[arg-type]
        failures,
        max_attempts=options.max_attempts,
        backoff_seconds=options.retry_backoff_seconds,
    )
    counts = {key: ProcessCounts() for key in {row.tenant_key for row in rows}}
    for e in embedded:
        counts[tenant_of_row[e.id]].embedded += 1
    for e in reused:
        counts[tenant_of_row[e.id]].embedded += 1
        counts[tenant_of_row[e.id]].unchanged += 1
    for rid, *_ in skipped:
        counts[tenant_of_row[rid]].skipped += 1
    for rid, state in failed_states.items():
        setattr(counts[tenant_of_row[rid]], state, getattr(counts[tenant_of_row[rid]], state) + 1)
    for rid, error in failures:
        logger.warning("memory %s of tenant %s failed: %s", rid, tenants[tenant_of_row[rid]], error)
    was_embedded = {row.id for row in rows if row.status == "embedded"}
    fresh: dict[str, list[int]] = {}
    for e in embedded:
        if e.id not in was_embedded:
            fresh.setdefault(tenant_of_row[e.id], []).append(e.id)
    return counts, fresh


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
    once every row has them. Raises ``VectorStoreUnavailable`` or a psycopg error when a store
    fails; the rows of the batch in flight stay as they were for the next run.
    """
    options = options or ProcessOptions()
    model_id = embedder.model_id
    with db.connection() as conn:
        live_model = q.live_model_of(conn, tenant.key)
    rolling_out = live_model is not None and live_model != model_id
    target = store.building_collection_name(tenant, model_id) if rolling_out else None

    counts = ProcessCounts()
    fresh: list[int] = []
    counts.deleted = apply_tombstones(db, store, tenant, [target] if target else [])
    _run_batches(
        db,
        tenant,
        options,
        counts,
        fresh,
        target,
        embedder,
        store,
        lambda conn, after: q.claim_workable_rows(conn, tenant.key, options.batch_rows, after),
    )
    if rolling_out:
        before = counts.embedded
        _run_batches(
            db,
            tenant,
            options,
            counts,
            fresh,
            target,
            embedder,
            store,
            lambda conn, after: q.claim_rows_missing_model(
                conn, tenant.key, model_id, options.batch_rows, after
            ),
        )
        counts.reembedded = counts.embedded - before
        counts.embedded = before
        counts.switched = int(_switch_when_complete(db, store, tenant, model_id, live_model))
    with db.connection() as conn:
        refresh_keyword_index(conn, {tenant.key: fresh})
    return counts


def _run_batches(
    db: Database,
    tenant: Tenant,
    options: ProcessOptions,
    counts: ProcessCounts,
    fresh: list[int],
    collection_name: str | None,
    embedder: Embedder,
    store: ChromaVectorStore,
    claim: Callable[[object, int], list[q.ClaimedRow]],
) -> None:
    last_id = 0
    while True:
        with db.connection() as conn, conn.transaction():
            shared_tenant_lock(conn, tenant)  # repair, purge and model switches take it exclusively
            rows = claim(conn, last_id)
            if not rows:
                return
            last_id = rows[-1].id
            by_tenant, fresh_by_tenant = _process_batch(
                conn, rows, {tenant.key: tenant}, embedder, store, options, collection_name
            )
            batch = by_tenant.get(tenant.key, ProcessCounts())
            if batch.embedded and collection_name is None:
                q.adopt_live_model(conn, [tenant.key], embedder.model_id)
            counts.add(batch)
        if options.on_batch is not None:
            options.on_batch(batch)
        fresh.extend(fresh_by_tenant.get(tenant.key, []))
        with db.connection() as conn:  # keep the keyword statistics' delta log short
            compact_term_stats(conn, [tenant.key])


def _switch_when_complete(
    db: Database, store: ChromaVectorStore, tenant: Tenant, model_id: str, old_model: str | None
) -> bool:
    """Switch the tenant's searches to ``model_id`` if every embedded row has its vectors."""
    with db.connection() as conn, tenant_lock(conn, tenant):
        if q.live_model_of(conn, tenant.key) != old_model:
            return False  # another run switched meanwhile
        if q.rows_missing_model(conn, tenant.key, model_id) > 0:
            return False
        store.collection(tenant, model_id, name=store.building_collection_name(tenant, model_id))
        store.swap_in(tenant, model_id, old_model)
        if old_model is not None:
            q.drop_model_vectors(conn, tenant.key, old_model)
        q.set_live_model(conn, tenant.key, model_id)
    if old_model is not None:  # the retired collection goes once Postgres points at the new one
        store.drop_collection(tenant, name=store.building_collection_name(tenant, old_model))
    logger.info("tenant %s now searches with model %s", tenant, model_id)
    return True


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
        live = q.live_models_of(conn, keys)
        with_tombstones = q.tenants_with_tombstones(conn, keys)
    for tenant in tenants:
        if live[tenant.key] not in (None, embedder.model_id):
            results[tenant.key] = process_tenant(db, store, embedder, tenant, options)
        else:
            if tenant.key in with_tombstones:
                results[tenant.key].deleted = apply_tombstones(db, store, tenant)
            together[tenant.key] = tenant
    fresh: dict[str, list[int]] = {key: [] for key in together}
    after: tuple[str, int] = ("", 0)
    while together:
        with db.connection() as conn, conn.transaction():
            conn.execute(  # shared: repair, purge and model switches take them exclusively
                "SELECT pg_advisory_xact_lock_shared(hashtextextended('tenant:' || k, 0)) "
                "FROM unnest(%s::text[]) AS k",
                (sorted(together),),
            )
            rows = q.claim_workable_rows_of_tenants(conn, list(together), options.batch_rows, after)
            if not rows:
                break
            after = (rows[-1].tenant_key, rows[-1].id)
            batch, fresh_by_tenant = _process_batch(conn, rows, together, embedder, store, options)
            done = [key for key, c in batch.items() if c.embedded]
            if done:
                q.adopt_live_model(conn, done, embedder.model_id)
            for key, c in batch.items():
                results[key].add(c)
        if options.on_batch is not None:
            batch_total = ProcessCounts()
            for c in batch.values():
                batch_total.add(c)
            options.on_batch(batch_total)
        for key, ids in fresh_by_tenant.items():
            fresh[key].extend(ids)
        with db.connection() as conn:  # keep the keyword statistics' delta log short
            compact_term_stats(conn, list(batch))
    if together:
        with db.connection() as conn:
            refresh_keyword_index(conn, fresh)
    return results
