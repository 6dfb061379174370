"""Moving a tenant of a home that became sharded into its shard's collections, from pgvector
(no re-embedding; docs/decisions/0203-tenant-shards.md)."""

from __future__ import annotations

import logging

from memory_pipeline.consistency.repair import copy_vectors_from_pgvector
from memory_pipeline.storage import memory_reads, tenant_layout
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.tenant_locks import tenant_lock
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore

logger = logging.getLogger(__name__)


def move_to_shard(db: Database, store: ChromaVectorStore, tenant: Tenant, shard: int) -> Tenant:
    """Copy the tenant's vectors of every model it has into ``shard``'s collections, record the
    shard, then drop its own collections; return the tenant placed in the shard.

    Under the tenant's exclusive lock, so no run writes its vectors meanwhile. Searches read the
    placement from Postgres: until the commit they use the tenant's own collection, which still
    holds everything, and after it the shard's. A crash before the commit leaves the tenant
    unplaced and the next move copies again (upserts by vector id never duplicate).
    """
    own = tenant.placed(None)
    moved = tenant.placed(shard)
    with db.connection() as conn, tenant_lock(conn, tenant):
        models = memory_reads.vector_models_of_tenant(conn, tenant.key)
        copied = sum(copy_vectors_from_pgvector(conn, store, moved, m) for m in models)
        tenant_layout.set_shard(conn, tenant.key, shard)
    for name in {own.collection_name, *(store.building_collection_name(own, m) for m in models)}:
        store.drop_collection(own, name=name)
    logger.info("tenant %s moved to shard %d (%d vectors, no re-embedding)", tenant, shard, copied)
    return moved
