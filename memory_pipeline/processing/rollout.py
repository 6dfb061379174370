"""Model rollout: a tenant's vectors are rebuilt aside for a newly configured model, and its
searches switch to them once every embedded row has them (DESIGN §3)."""

from __future__ import annotations

import logging

import psycopg

from memory_pipeline.consistency.repair import copy_vectors_from_pgvector
from memory_pipeline.storage import live_models, memory_reads
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.tenant_locks import tenant_lock
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore

logger = logging.getLogger(__name__)


def switch_when_complete(
    db: Database, store: ChromaVectorStore, tenant: Tenant, model_id: str, old_model: str | None
) -> bool:
    """Switch the tenant's searches to ``model_id`` if every embedded row has its vectors."""
    with db.connection() as conn, tenant_lock(conn, tenant):
        if live_models.live_model_of(conn, tenant.key) != old_model:
            return False  # another run switched meanwhile
        if live_models.rows_missing_model(conn, tenant.key, model_id) > 0:
            return False
        building = store.building_collection_name(tenant, model_id)
        store.collection(tenant, model_id, name=building)
        _copy_vectors_the_rollout_did_not_write(conn, store, tenant, model_id, building)
        store.swap_in(tenant, model_id, old_model)
        live_models.record_rows_embedded_by(conn, tenant.key, model_id)
        if old_model is not None:
            live_models.drop_model_vectors(conn, tenant.key, old_model)
        live_models.set_live_model(conn, tenant.key, model_id)
    if old_model is not None:  # the retired collection goes once Postgres points at the new one
        store.drop_collection(tenant, name=store.building_collection_name(tenant, old_model))
    logger.info("tenant %s now searches with model %s", tenant, model_id)
    return True


def _copy_vectors_the_rollout_did_not_write(
    conn: psycopg.Connection, store: ChromaVectorStore, tenant: Tenant, model_id: str, name: str
) -> None:
    """Rows that already had the model's vectors in pgvector (written as the tenant's second
    stage, docs/decisions/0153) were not re-embedded, so the rollout never sent them to Chroma:
    the new collection gets them from pgvector before searches switch to it."""
    missing = memory_reads.vector_ids_of_tenant(conn, tenant.key, model_id) - store.vector_ids(
        tenant, collection_name=name
    )
    if missing:
        copied = copy_vectors_from_pgvector(conn, store, tenant, model_id, collection_name=name)
        logger.info("tenant %s: %d vectors of %s copied from pgvector", tenant, copied, model_id)
