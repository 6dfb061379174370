"""Asset checks per tenant partition: stuck rows, failures, and Postgres/Chroma agreement.

Partitioned asset checks are a preview API in this Dagster version (DESIGN §7); each check
calls a plain function of ``memory_pipeline.consistency``.
"""

from datetime import timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    asset_check,
)

from memory_pipeline.consistency import compare_vectors, tenant_health
from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.partitions import tenant_partitions
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource
from memory_pipeline.storage import memory_logs as q
from memory_pipeline.tenancy import Tenant

#: A row pending longer than this means the sensor or the runs are not keeping up.
STUCK_PENDING_AFTER = timedelta(minutes=10)


def _tenants(context: AssetCheckExecutionContext, postgres: PostgresResource) -> list[Tenant]:
    """The tenants of the run's partition or partition range (grouped sensor runs use ranges)."""
    with postgres.database().connection() as conn:
        found = (q.tenant_of(conn, key) for key in context.partition_keys)
        return [t for t in found if t is not None]


@asset_check(
    asset=tenant_memory_vectors,
    partitions_def=tenant_partitions,
    description=f"No memory of the tenant has been pending longer than {STUCK_PENDING_AFTER}.",
)
def nothing_stuck_pending(
    context: AssetCheckExecutionContext, postgres: PostgresResource
) -> AssetCheckResult:
    healths = [
        tenant_health(postgres.database(), t, STUCK_PENDING_AFTER)
        for t in _tenants(context, postgres)
    ]
    return AssetCheckResult(
        passed=all(h.stuck_pending == 0 for h in healths),
        metadata={
            "tenants": len(healths),
            "pending": sum(h.pending for h in healths),
            "stuck_pending": sum(h.stuck_pending for h in healths),
            "oldest_pending_seconds": max(
                (h.oldest_pending_seconds or 0.0 for h in healths), default=0.0
            ),
        },
    )


@asset_check(
    asset=tenant_memory_vectors,
    partitions_def=tenant_partitions,
    description="No memory of the tenant is failed or dead (`memory-pipeline retry` re-queues them).",
)
def no_failed_or_dead_memories(
    context: AssetCheckExecutionContext, postgres: PostgresResource
) -> AssetCheckResult:
    healths = [
        tenant_health(postgres.database(), t, STUCK_PENDING_AFTER)
        for t in _tenants(context, postgres)
    ]
    return AssetCheckResult(
        passed=all(h.failed == 0 and h.dead == 0 for h in healths),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "tenants": len(healths),
            "failed": sum(h.failed for h in healths),
            "dead": sum(h.dead for h in healths),
            "recent_errors": "\n".join(e for h in healths for e in h.recent_errors[:5]) or "none",
        },
    )


@asset_check(
    asset=tenant_memory_vectors,
    partitions_def=tenant_partitions,
    description="The tenant's vector id sets in Postgres and Chroma are equal, and sampled vectors match.",
)
def postgres_and_chroma_agree(
    context: AssetCheckExecutionContext,
    postgres: PostgresResource,
    chroma: ChromaResource,
    embedder: EmbedderResource,
) -> AssetCheckResult:
    drifts = {
        t: compare_vectors(postgres.database(), chroma.vector_store(), t, embedder.model_id())
        for t in _tenants(context, postgres)
    }
    out_of_sync = [f"{t}" for t, d in drifts.items() if not d.in_sync]
    examples = [i for d in drifts.values() for i in (d.missing_in_chroma + d.extra_in_chroma)[:5]]
    return AssetCheckResult(
        passed=not out_of_sync,
        metadata={
            "tenants": len(drifts),
            "postgres_vectors": sum(d.postgres_count for d in drifts.values()),
            "chroma_vectors": sum(d.chroma_count for d in drifts.values()),
            "missing_in_chroma": sum(len(d.missing_in_chroma) for d in drifts.values()),
            "extra_in_chroma": sum(len(d.extra_in_chroma) for d in drifts.values()),
            "mismatched_sampled_vectors": sum(len(d.mismatched_vectors) for d in drifts.values()),
            "tenants_out_of_sync": ", ".join(out_of_sync[:10]) or "none",
            "examples": ", ".join(examples[:10]) or "none",
        },
    )


tenant_checks = [nothing_stuck_pending, no_failed_or_dead_memories, postgres_and_chroma_agree]
