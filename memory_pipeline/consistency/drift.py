"""Drift detection: vector id sets (DESIGN §2) and sampled vector values across the stores, and
with a second stage configured, its vectors in pgvector against the embedded rows (0153)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from memory_pipeline.storage import memory_reads
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.second_stage_vectors import second_stage_gaps
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore

#: Sampled vectors whose values must agree between the stores (cosine distance tolerance).
VECTOR_SAMPLE_SIZE = 50
VECTOR_TOLERANCE = 1e-4


@dataclass(frozen=True)
class VectorDrift:
    """How a tenant's vectors differ between Postgres (the truth) and Chroma, and how its
    second-stage vectors (``second_stage_model``; ``None``: none configured) differ from its
    embedded rows' chunks."""

    postgres_count: int
    chroma_count: int
    missing_in_chroma: list[str] = field(default_factory=list)
    extra_in_chroma: list[str] = field(default_factory=list)
    mismatched_vectors: list[str] = field(default_factory=list)
    sampled: int = 0
    second_stage_model: str | None = None
    missing_second_stage: list[str] = field(default_factory=list)
    stale_second_stage: list[str] = field(default_factory=list)
    #: Vectors of models neither live, configured nor the second stage's (a replaced model).
    other_model_vectors: dict[str, int] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        return not (
            self.missing_in_chroma
            or self.extra_in_chroma
            or self.mismatched_vectors
            or self.missing_second_stage
            or self.stale_second_stage
            or self.other_model_vectors
        )


def _with_second_stage(
    db: Database, drifts: dict[Tenant, VectorDrift], model_id: str, second_stage_model: str | None
) -> dict[Tenant, VectorDrift]:
    """``drifts`` with the tenants' second-stage gaps filled in (unchanged without one)."""
    if second_stage_model is None or not drifts:
        return drifts
    with db.connection() as conn:
        gaps = second_stage_gaps(conn, [t.key for t in drifts], second_stage_model, model_id)
    return {
        t: replace(
            d,
            second_stage_model=second_stage_model,
            missing_second_stage=gaps[t.key].missing,
            stale_second_stage=gaps[t.key].stale,
            other_model_vectors=gaps[t.key].other_models,
        )
        for t, d in drifts.items()
    }


def compare_vectors(
    db: Database,
    store: ChromaVectorStore,
    tenant: Tenant,
    model_id: str,
    *,
    sample_size: int = VECTOR_SAMPLE_SIZE,
    seed: int = 0,
    second_stage_model: str | None = None,
) -> VectorDrift:
    """Compare the tenant's vector id sets, and a sample of vector values, across the stores;
    with ``second_stage_model``, also its second-stage vectors against its embedded rows."""
    with db.connection() as conn:
        pg_ids = memory_reads.vector_ids_of_tenant(conn, tenant.key, model_id)
    live = store.live_collection_name(tenant, model_id)
    chroma_ids = store.vector_ids(tenant, collection_name=live)
    common = sorted(pg_ids & chroma_ids)
    sample = random.Random(seed).sample(common, min(sample_size, len(common)))
    mismatched: list[str] = []
    if sample:
        with db.connection() as conn:
            rows = conn.execute(
                "SELECT vector_id, embedding FROM memory_vector "
                "WHERE tenant_key = %s AND embedding_model = %s AND vector_id = ANY(%s)",
                (tenant.key, model_id, sample),
            ).fetchall()
        pg_vectors = {r["vector_id"]: np.asarray(r["embedding"].to_numpy()) for r in rows}
        chroma_vectors = store.get_vectors(tenant, sample, collection_name=live)
        for vid in sample:
            a, b = pg_vectors.get(vid), chroma_vectors.get(vid)
            if (
                a is None
                or b is None
                or a.shape != b.shape
                or np.max(np.abs(a - b)) > VECTOR_TOLERANCE
            ):
                mismatched.append(vid)
    drift = VectorDrift(
        postgres_count=len(pg_ids),
        chroma_count=len(chroma_ids),
        missing_in_chroma=sorted(pg_ids - chroma_ids),
        extra_in_chroma=sorted(chroma_ids - pg_ids),
        mismatched_vectors=mismatched,
        sampled=len(sample),
    )
    return _with_second_stage(db, {tenant: drift}, model_id, second_stage_model)[tenant]


def compare_tenants(
    db: Database,
    store: ChromaVectorStore,
    tenants: Sequence[Tenant],
    model_id: str,
    *,
    sample_size: int = VECTOR_SAMPLE_SIZE,
    seed: int = 0,
    second_stage_model: str | None = None,
) -> dict[Tenant, VectorDrift]:
    """:func:`compare_vectors` for many tenants: those in a shard are compared shard by shard,
    one read of the shard's collection for all of them (a sample of ``sample_size`` vectors per
    shard), so a sharded home's check costs Chroma requests per shard, not per tenant; the
    second stage's gaps take three queries for all of them."""
    out: dict[Tenant, VectorDrift] = {}
    by_shard: dict[int, list[Tenant]] = {}
    for tenant in tenants:
        if tenant.shard is None:
            out[tenant] = compare_vectors(
                db, store, tenant, model_id, sample_size=sample_size, seed=seed
            )
        else:
            by_shard.setdefault(tenant.shard, []).append(tenant)
    for shard, members in by_shard.items():
        out.update(_compare_shard(db, store, shard, members, model_id, sample_size, seed))
    return _with_second_stage(db, {t: out[t] for t in tenants}, model_id, second_stage_model)


def _compare_shard(
    db: Database,
    store: ChromaVectorStore,
    shard: int,
    tenants: Sequence[Tenant],
    model_id: str,
    sample_size: int,
    seed: int,
) -> dict[Tenant, VectorDrift]:
    keys = [t.key for t in tenants]
    with db.connection() as conn:
        pg = memory_reads.vector_ids_of_tenants(conn, keys, model_id)
    owners = {vid: key for vid, (key, _) in store.shard_contents(shard, model_id).items()}
    chroma: dict[str, set[str]] = {key: set() for key in keys}
    for vid, key in owners.items():
        if key in chroma:
            chroma[key].add(vid)
    common = sorted(vid for key in keys for vid in pg[key] & chroma[key])
    sample = random.Random(seed).sample(common, min(sample_size, len(common)))
    mismatched: set[str] = set()
    if sample:
        with db.connection() as conn:
            rows = conn.execute(
                "SELECT vector_id, embedding FROM memory_vector "
                "WHERE tenant_key = ANY(%s) AND embedding_model = %s AND vector_id = ANY(%s)",
                (keys, model_id, sample),
            ).fetchall()
        pg_vectors = {r["vector_id"]: np.asarray(r["embedding"].to_numpy()) for r in rows}
        got = store.shard_contents(shard, model_id, ids=sample)
        for vid in sample:
            a, b = pg_vectors.get(vid), got.get(vid, ("", None))[1]
            if (
                a is None
                or b is None
                or a.shape != b.shape
                or np.max(np.abs(a - b)) > VECTOR_TOLERANCE
            ):
                mismatched.add(vid)
    in_sample = set(sample)
    return {
        t: VectorDrift(
            postgres_count=len(pg[t.key]),
            chroma_count=len(chroma[t.key]),
            missing_in_chroma=sorted(pg[t.key] - chroma[t.key]),
            extra_in_chroma=sorted(chroma[t.key] - pg[t.key]),
            mismatched_vectors=sorted(v for v in mismatched if v in pg[t.key]),
            sampled=len(in_sample & pg[t.key]),
        )
        for t in tenants
    }
