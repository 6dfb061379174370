"""The repair job: rebuild a tenant's Chroma collection from pgvector (no re-embedding), and with
a second stage configured, make its second-stage vectors complete (decision 0153)."""

from dagster import OpExecutionContext, job, op

from memory_pipeline.consistency import compare_vectors, rebuild_collection_from_pgvector
from memory_pipeline.defs.partitions import (
    tenant_partitions,
    tenants_of_run,
)
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource
from memory_pipeline.processing import ProcessOptions
from memory_pipeline.processing.second_stage import repair_second_stage
from memory_pipeline.settings import Settings


@op(
    description="Rebuild the partition's tenant collection in Chroma from the vectors in "
    "Postgres; with a second stage, drop its stale vectors and backfill the missing ones."
)
def rebuild_tenant_collection(
    context: OpExecutionContext,
    postgres: PostgresResource,
    chroma: ChromaResource,
    embedder: EmbedderResource,
) -> None:
    db, store = postgres.database(), chroma.vector_store()
    model_id = embedder.model_id()
    options = ProcessOptions.from_settings(Settings.from_env())
    second = options.second_stage.model_id if options.second_stage is not None else None
    with db.connection() as conn:
        tenants = tenants_of_run(conn, context.partition_keys)
    for tenant in tenants:
        written = rebuild_collection_from_pgvector(db, store, tenant, model_id)
        staged = repair_second_stage(db, tenant, options, model_id)
        drift = compare_vectors(db, store, tenant, model_id, second_stage_model=second)
        context.log.info(
            f"tenant {tenant}: rebuilt {written} vectors; second stage: dropped "
            f"{staged.dropped} vectors, backfilled {staged.backfilled} rows; "
            f"in sync: {drift.in_sync}"
        )
        if not drift.in_sync:
            raise RuntimeError(
                f"tenant {tenant}: vectors still differ from Postgres's rows after repair"
            )


@job(
    partitions_def=tenant_partitions,
    description="Rebuild tenants' Chroma collections from pgvector (Postgres is the durable copy), "
    "and complete their second-stage vectors when one is configured.",
)
def repair_chroma_from_pgvector() -> None:
    rebuild_tenant_collection()
