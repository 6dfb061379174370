"""Deleted memories: their vectors leave Chroma on the tenant's next run (DESIGN §2)."""

from __future__ import annotations

from collections.abc import Sequence

from memory_pipeline.storage import tombstones
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.tenant_locks import shared_tenant_lock
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore


def apply_tombstones(
    db: Database, store: ChromaVectorStore, tenant: Tenant, collections: Sequence[str]
) -> int:
    """Remove deleted memories' vectors from the tenant's ``collections`` (its live one, and
    the one a rollout builds), then forget their tombstones."""
    with db.connection() as conn, conn.transaction():
        shared_tenant_lock(conn, tenant)
        log_ids = tombstones.take_tombstones(conn, tenant.key)
        if log_ids:
            for name in dict.fromkeys(collections):
                store.delete_memories(tenant, log_ids, collection_name=name)
            tombstones.clear_tombstones(conn, log_ids)
    return len(log_ids)
