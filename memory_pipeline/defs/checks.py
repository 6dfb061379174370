"""Asset checks per tenant partition: stuck rows, failures, and Postgres/Chroma agreement.

Partitioned asset checks are a preview API in this Dagster version (DESIGN §7); each check
calls a plain function of ``memory_pipeline.consistency``.

The two row-state checks read Postgres only, in two queries whatever the number of tenants,
and run in every sensor-launched run (:data:`ROW_STATE_CHECK_KEYS`). The Postgres/Chroma
agreement check costs Chroma round trips per tenant (about 35 ms each: 35 s for a grouped run
of 1,000 tenants, time during which the run still holds its tenants and new rows of them
wait), so it runs on its own schedule over every tenant (``tenant_drift_check_schedule``, on
``MEMORY_PIPELINE_DRIFT_CHECK_CRON``, daily by default), after a repair, and on demand from the
UI or any run that selects it.
"""

from datetime import timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    asset_check,
    define_asset_job,
    schedule,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from memory_pipeline.consistency import compare_vectors, tenants_health
from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME, tenant_partitions
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource
from memory_pipeline.settings import Settings
from memory_pipeline.storage import memory_logs as q
from memory_pipeline.tenancy import Tenant

#: A row pending longer than this means the sensor or the runs are not keeping up.
STUCK_PENDING_AFTER = timedelta(minutes=10)


def _tenants(context: AssetCheckExecutionContext, postgres: PostgresResource) -> list[Tenant]:
    """The tenants of the run's partition or partition range (grouped sensor runs use ranges)."""
    with postgres.database().connection() as conn:
        return list(q.tenants_of(conn, context.partition_keys).values())


@asset_check(
    asset=tenant_memory_vectors,
    partitions_def=tenant_partitions,
    description=f"No memory of the tenant has been pending longer than {STUCK_PENDING_AFTER}.",
)
def nothing_stuck_pending(
    context: AssetCheckExecutionContext, postgres: PostgresResource
) -> AssetCheckResult:
    keys = context.partition_keys
    health = tenants_health(postgres.database(), keys, STUCK_PENDING_AFTER)
    return AssetCheckResult(
        passed=health.stuck_pending == 0,
        metadata={
            "tenants": len(keys),
            "pending": health.pending,
            "stuck_pending": health.stuck_pending,
            "oldest_pending_seconds": health.oldest_pending_seconds or 0.0,
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
    keys = context.partition_keys
    health = tenants_health(postgres.database(), keys, STUCK_PENDING_AFTER)
    return AssetCheckResult(
        passed=health.failed == 0 and health.dead == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "tenants": len(keys),
            "failed": health.failed,
            "dead": health.dead,
            "recent_errors": "\n".join(health.recent_errors) or "none",
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
#: The checks every sensor-launched run carries (Postgres only; see the module's docstring).
ROW_STATE_CHECK_KEYS = [nothing_stuck_pending.check_key, no_failed_or_dead_memories.check_key]

TENANT_DRIFT_CHECK_JOB = "tenant_drift_check"
tenant_drift_check = define_asset_job(
    TENANT_DRIFT_CHECK_JOB,
    selection=AssetSelection.checks(postgres_and_chroma_agree),
    description="Compare every tenant's vectors in Postgres and Chroma (ids, and sampled values).",
)


@schedule(
    name="tenant_drift_check_schedule",
    job=tenant_drift_check,
    cron_schedule=Settings.from_env().drift_check_cron,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Runs the Postgres/Chroma agreement check over every tenant, as one ranged run, "
    "on MEMORY_PIPELINE_DRIFT_CHECK_CRON.",
)
def tenant_drift_check_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    keys = list(context.instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    if not keys:
        return SkipReason("no tenant partitions yet")
    return RunRequest(
        tags={
            ASSET_PARTITION_RANGE_START_TAG: keys[0],
            ASSET_PARTITION_RANGE_END_TAG: keys[-1],
        },
    )
