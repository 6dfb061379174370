"""The repair job: rebuild a tenant's Chroma collection from pgvector (no re-embedding)."""

from dagster import OpExecutionContext, job, op

from memory_pipeline.consistency import compare_vectors, rebuild_collection_from_pgvector
from memory_pipeline.defs.partitions import (
    tenant_partitions,
    tenants_of_run,
)
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource


@op(description="Rebuild the partition's tenant collection in Chroma from the vectors in Postgres.")
def rebuild_tenant_collection(
    context: OpExecutionContext,
    postgres: PostgresResource,
    chroma: ChromaResource,
    embedder: EmbedderResource,
) -> None:
    db, store = postgres.database(), chroma.vector_store()
    model_id = embedder.model_id()
    with db.connection() as conn:
        tenants = tenants_of_run(conn, context.partition_keys)
    for tenant in tenants:
        written = rebuild_collection_from_pgvector(db, store, tenant, model_id)
        drift = compare_vectors(db, store, tenant, model_id)
        context.log.info(f"tenant {tenant}: rebuilt {written} vectors; in sync: {drift.in_sync}")
        if not drift.in_sync:
            raise RuntimeError(
                f"tenant {tenant}: collection still differs from Postgres after repair"
            )


@job(
    partitions_def=tenant_partitions,
    description="Rebuild tenants' Chroma collections from pgvector (Postgres is the durable copy).",
)
def repair_chroma_from_pgvector() -> None:
    rebuild_tenant_collection()
