"""Repair: rebuild a tenant's Chroma collection from pgvector, without re-embedding.

Postgres is the durable copy (DESIGN §6): after a lost or drifted Chroma, the vectors and their
metadata are rewritten from memory_vector and memory_log.
"""

from __future__ import annotations

import numpy as np
import psycopg

from memory_pipeline.storage.database import Database
from memory_pipeline.storage.tenant_locks import tenant_lock
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, vector_metadata

REPAIR_BATCH = 2000


def copy_vectors_from_pgvector(
    conn: psycopg.Connection,
    store: ChromaVectorStore,
    tenant: Tenant,
    model_id: str,
    *,
    collection_name: str | None = None,
) -> int:
    """Upsert every vector of ``model_id`` that Postgres holds for the tenant into its Chroma
    collection (``collection_name``, else its live one); return how many."""
    written = 0
    with conn.cursor(name=f"copy_{tenant.key}") as cur:
        cur.execute(
            """SELECT v.vector_id, v.log_id, v.chunk_index, v.embedding,
                      m.memory_type, m.occurred_at
               FROM memory_vector v JOIN memory_log m ON m.id = v.log_id
               WHERE v.tenant_key = %s AND v.embedding_model = %s
               ORDER BY v.log_id, v.chunk_index""",
            (tenant.key, model_id),
        )
        while rows := cur.fetchmany(REPAIR_BATCH):
            store.upsert_vectors(
                tenant,
                model_id,
                [r["vector_id"] for r in rows],
                np.stack([r["embedding"].to_numpy() for r in rows]).astype(np.float32),
                [
                    vector_metadata(
                        tenant,
                        model_id,
                        r["log_id"],
                        r["chunk_index"],
                        r["memory_type"],
                        r["occurred_at"],
                    )
                    for r in rows
                ],
                collection_name=collection_name,
            )
            written += len(rows)
    return written


def rebuild_collection_from_pgvector(
    db: Database, store: ChromaVectorStore, tenant: Tenant, model_id: str
) -> int:
    """Replace the tenant's collection with exactly the vectors Postgres holds; return how many.

    Holds the tenant's advisory lock so no run writes the collection meanwhile. In a shard's
    collection only the tenant's own vectors are replaced.
    """
    with db.connection() as conn, tenant_lock(conn, tenant):
        live = store.live_collection_name(tenant, model_id)
        store.drop_collection(tenant, name=live)
        store.collection(tenant, model_id)  # recreate, empty, with tenant metadata
        return copy_vectors_from_pgvector(conn, store, tenant, model_id)
