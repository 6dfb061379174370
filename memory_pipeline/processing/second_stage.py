"""The second stage's vectors outside a batch (docs/decisions/0153): the backfill that gives
embedded rows the ones they lack, and the repair that also drops those that should not exist."""

from __future__ import annotations

from dataclasses import dataclass

from memory_pipeline.processing.options import ProcessOptions
from memory_pipeline.storage import claims, live_models
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.row_outcomes import write_chunk_vectors
from memory_pipeline.storage.second_stage_vectors import drop_stale_second_stage
from memory_pipeline.storage.tenant_locks import shared_tenant_lock, tenant_lock
from memory_pipeline.tenancy import Tenant


def backfill_second_stage(db: Database, tenant: Tenant, options: ProcessOptions) -> int:
    """Give the tenant's embedded rows that lack some of them their second-stage vectors (the
    setting was turned on or changed after they were embedded, or vectors were lost); how many
    rows got them."""
    second = options.second_stage
    if second is None:
        return 0
    done, last_id = 0, 0
    while True:
        with db.connection() as conn, conn.transaction():
            shared_tenant_lock(conn, tenant)
            live = live_models.live_model_of(conn, tenant.key)
            rows = claims.claim_rows_lacking_chunks_of_model(
                conn, tenant.key, second.model_id, options.batch_rows, last_id
            )
            if live is None or not rows:
                return done
            last_id = rows[-1].id
            texts = live_models.chunk_texts_of(conn, tenant.key, live, [r.id for r in rows])
            ids = [r.id for r in rows if texts.get(r.id)]
            flat = [t for i in ids for t in texts[i]]
            vectors = second.embed_batch(flat) if flat else None
            triples, start = [], 0
            for i in ids:
                triples.append((i, texts[i], vectors[start : start + len(texts[i])]))
                start += len(texts[i])
            write_chunk_vectors(conn, tenant.key, second.model_id, triples)
            done += len(triples)


@dataclass(frozen=True)
class SecondStageRepair:
    """What :func:`repair_second_stage` did for one tenant."""

    dropped: int  # stale second-stage vectors and vectors of replaced models deleted
    backfilled: int  # rows given the second-stage vectors they lacked


def repair_second_stage(
    db: Database, tenant: Tenant, options: ProcessOptions, first_model_id: str
) -> SecondStageRepair:
    """Make the tenant's second-stage vectors what the drift check expects: drop the stale ones
    and those of models neither live, ``first_model_id`` nor the second stage's, then backfill
    the missing ones. Nothing to do without a second stage configured."""
    second = options.second_stage
    if second is None:
        return SecondStageRepair(0, 0)
    with db.connection() as conn, tenant_lock(conn, tenant):  # no run writes them meanwhile
        dropped = drop_stale_second_stage(conn, tenant.key, second.model_id, first_model_id)
    return SecondStageRepair(dropped, backfill_second_stage(db, tenant, options))
