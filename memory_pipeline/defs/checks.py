"""Asset checks on tenant_memory_vectors: stuck rows, failures, and Postgres/Chroma agreement.

Each check covers the ``tenants`` of its config (partition keys), else the run's partition or
partition range, else every tenant ("Execute all" and "Execute" in the asset's Checks tab, the
drift schedule); it reports per tenant, failing tenants first, with a sample of the rows at
fault. The checks are not partitioned: Dagster 1.13's UI cannot run partitioned checks on their
own (decision 0201). Sensor runs carry the two Postgres-only checks; the Postgres/Chroma
agreement check costs Chroma round trips per tenant and runs on its own schedule over every
tenant, and on demand (decision 0015).
"""

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from dagster import (
    Array,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetSelection,
    Config,
    ConfigMapping,
    DefaultScheduleStatus,
    Field,
    RunRequest,
    ScheduleEvaluationContext,
    asset_check,
    define_asset_job,
    schedule,
)
from pydantic import Field as ConfigField

from memory_pipeline.consistency import compare_tenants
from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.metadata import ROW_SAMPLE_SIZE, TENANT_TABLE_SIZE, row_table, table
from memory_pipeline.defs.partitions import (
    TENANT_PARTITIONS_NAME,
    tenants_of_run,
)
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource
from memory_pipeline.defs.runs import tenants_in_active_runs
from memory_pipeline.search.second_stage import second_stage_model_id
from memory_pipeline.settings import Settings
from memory_pipeline.storage import tenant_layout, tenant_status
from memory_pipeline.tenancy import Tenant

#: A row pending longer than this means the sensor or the runs are not keeping up.
STUCK_PENDING_AFTER = timedelta(minutes=10)


class TenantScope(Config):
    """Which tenants a check covers (see the module's docstring)."""

    tenants: list[str] = ConfigField(
        default_factory=list,
        description="tenant partition keys (user_id/project_id) or shard keys (shard-0042: "
        "all of its tenants); empty: the run's partitions, else every tenant",
    )


def _scope(
    context: AssetCheckExecutionContext, postgres: PostgresResource, config: TenantScope
) -> list[Tenant]:
    with postgres.database().connection() as conn:
        if config.tenants:
            keys: Sequence[str] | None = config.tenants
        elif context.has_partition_key or context.has_partition_key_range:
            keys = context.partition_keys
        else:
            return tenant_status.all_tenants(conn)
        return tenants_of_run(conn, keys)


def _per_tenant(
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The per-tenant table (failing tenants first) and how many tenants it leaves out."""
    ordered = sorted(rows, key=lambda r: r["passed"])
    shown = ordered[:TENANT_TABLE_SIZE]
    return {
        "per_tenant": table([("tenant", "string"), ("passed", "bool"), *columns], shown),
        "tenants_shown": f"{len(shown)} of {len(rows)} (failing first)",
    }


@asset_check(
    asset=tenant_memory_vectors,
    description=(
        f"No memory of the checked tenants has been pending longer than {STUCK_PENDING_AFTER} "
        "while no run serves its tenant (the sensor or the runs are not keeping up); names the "
        "oldest stuck rows."
    ),
)
def nothing_stuck_pending(
    context: AssetCheckExecutionContext, postgres: PostgresResource, config: TenantScope
) -> AssetCheckResult:
    tenants = _scope(context, postgres, config)
    by_key = {t.key: t for t in tenants}
    # a tenant that another active run will still claim rows of is being served, not stuck
    served = tenants_in_active_runs(
        context.instance,
        list(context.instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME)),
        exclude_run_id=context.run.run_id,
    )
    with postgres.database().connection() as conn:
        layout = tenant_layout.read_layout(conn)
        # a tenant is served by a run of its own partition, or of its shard's
        served_keys = {
            t.key for t in tenants if {t.partition_key, layout.partition_key(t)} & served
        }
        unserved = [t.key for t in tenants if t.key not in served_keys]
        pending = tenant_status.pending_ages(conn, list(by_key), STUCK_PENDING_AFTER)
        stuck_rows = tenant_status.stuck_pending_samples(
            conn, unserved, STUCK_PENDING_AFTER, ROW_SAMPLE_SIZE
        )
    rows = [
        {
            "tenant": t.partition_key,
            "passed": pending[t.key].stuck == 0 or t.key in served_keys,
            "served_by_a_run": t.key in served_keys,
            "pending": pending[t.key].pending,
            "stuck_pending": pending[t.key].stuck,
            "oldest_pending_seconds": pending[t.key].oldest_seconds,
        }
        for t in tenants
    ]
    stuck = sum(r["stuck_pending"] for r in rows if not r["served_by_a_run"])
    return AssetCheckResult(
        passed=stuck == 0,
        description=f"{stuck} row(s) pending longer than {STUCK_PENDING_AFTER} with no run "
        f"serving them, in {len(tenants)} tenant(s)",
        metadata={
            "tenants": len(tenants),
            "pending": sum(r["pending"] for r in rows),
            "stuck_pending": stuck,
            "stuck_row_ids": ", ".join(str(r.id) for r in stuck_rows) or "none",
            "oldest_pending_seconds": max((r["oldest_pending_seconds"] for r in rows), default=0.0),
            **_per_tenant(
                [
                    ("served_by_a_run", "bool"),
                    ("pending", "int"),
                    ("stuck_pending", "int"),
                    ("oldest_pending_seconds", "float"),
                ],
                rows,
            ),
            "stuck_rows": row_table(stuck_rows, by_key),
        },
    )


@asset_check(
    asset=tenant_memory_vectors,
    description=(
        "No memory of the checked tenants is failed or dead (`memory-pipeline retry` re-queues "
        "them); names the rows with their last error, and shows skipped memories with why."
    ),
)
def no_failed_or_dead_memories(
    context: AssetCheckExecutionContext,
    postgres: PostgresResource,
    embedder: EmbedderResource,
    config: TenantScope,
) -> AssetCheckResult:
    tenants = _scope(context, postgres, config)
    by_key = {t.key: t for t in tenants}
    with postgres.database().connection() as conn:
        totals = tenant_status.tenant_totals(conn, list(by_key), embedder.model_id())
        failing = tenant_status.row_samples(
            conn, list(by_key), ("failed", "dead"), limit=ROW_SAMPLE_SIZE
        )
        skipped = tenant_status.row_samples(conn, list(by_key), ("skipped",), limit=ROW_SAMPLE_SIZE)
    rows = [
        {
            "tenant": t.partition_key,
            "passed": totals[t.key].failed == 0 and totals[t.key].dead == 0,
            "failed": totals[t.key].failed,
            "dead": totals[t.key].dead,
            "skipped": totals[t.key].skipped,
        }
        for t in tenants
    ]
    failed, dead = sum(r["failed"] for r in rows), sum(r["dead"] for r in rows)
    return AssetCheckResult(
        passed=failed == 0 and dead == 0,
        severity=AssetCheckSeverity.WARN,
        description=f"{failed} failed and {dead} dead row(s) in {len(tenants)} tenant(s)",
        metadata={
            "tenants": len(tenants),
            "failed": failed,
            "dead": dead,
            "skipped": sum(r["skipped"] for r in rows),
            **_per_tenant([("failed", "int"), ("dead", "int"), ("skipped", "int")], rows),
            "failed_or_dead_rows": row_table(failing, by_key),
            "skipped_rows": row_table(skipped, by_key),
        },
    )


@asset_check(
    asset=tenant_memory_vectors,
    description=(
        "The checked tenants' vector id sets in Postgres and Chroma are equal, and sampled "
        "vectors match; with a second stage configured, every embedded chunk has exactly its "
        "second-stage vector in Postgres; names the vector ids that differ."
    ),
)
def postgres_and_chroma_agree(
    context: AssetCheckExecutionContext,
    postgres: PostgresResource,
    chroma: ChromaResource,
    embedder: EmbedderResource,
    config: TenantScope,
) -> AssetCheckResult:
    tenants = _scope(context, postgres, config)
    db, store, model_id = postgres.database(), chroma.vector_store(), embedder.model_id()
    second = second_stage_model_id(Settings.from_env())
    # a shard at a time (decision 0203)
    drifts = compare_tenants(db, store, tenants, model_id, second_stage_model=second)
    rows = [
        {
            "tenant": t.partition_key,
            "passed": d.in_sync,
            "postgres_vectors": d.postgres_count,
            "chroma_vectors": d.chroma_count,
            "missing_in_chroma": len(d.missing_in_chroma),
            "extra_in_chroma": len(d.extra_in_chroma),
            "mismatched_sampled_vectors": len(d.mismatched_vectors),
            "missing_second_stage": len(d.missing_second_stage),
            "stale_second_stage": len(d.stale_second_stage),
            "other_model_vectors": sum(d.other_model_vectors.values()),
            "example_ids": ", ".join(
                (
                    d.missing_in_chroma
                    + d.extra_in_chroma
                    + d.mismatched_vectors
                    + d.missing_second_stage
                    + d.stale_second_stage
                    + sorted(d.other_model_vectors)
                )[:5]
            ),
        }
        for t, d in drifts.items()
    ]
    out_of_sync = [r["tenant"] for r in rows if not r["passed"]]
    return AssetCheckResult(
        passed=not out_of_sync,
        description=f"{len(out_of_sync)} of {len(tenants)} tenant(s) out of sync",
        metadata={
            "tenants": len(tenants),
            "tenants_out_of_sync": len(out_of_sync),
            "postgres_vectors": sum(r["postgres_vectors"] for r in rows),
            "chroma_vectors": sum(r["chroma_vectors"] for r in rows),
            "missing_in_chroma": sum(r["missing_in_chroma"] for r in rows),
            "extra_in_chroma": sum(r["extra_in_chroma"] for r in rows),
            "mismatched_sampled_vectors": sum(r["mismatched_sampled_vectors"] for r in rows),
            **({"second_stage_model": second} if second else {}),
            "missing_second_stage": sum(r["missing_second_stage"] for r in rows),
            "stale_second_stage": sum(r["stale_second_stage"] for r in rows),
            "other_model_vectors": sum(r["other_model_vectors"] for r in rows),
            **_per_tenant(
                [
                    ("postgres_vectors", "int"),
                    ("chroma_vectors", "int"),
                    ("missing_in_chroma", "int"),
                    ("extra_in_chroma", "int"),
                    ("mismatched_sampled_vectors", "int"),
                    ("missing_second_stage", "int"),
                    ("stale_second_stage", "int"),
                    ("other_model_vectors", "int"),
                    ("example_ids", "string"),
                ],
                rows,
            ),
        },
    )


tenant_checks = [nothing_stuck_pending, no_failed_or_dead_memories, postgres_and_chroma_agree]
#: The checks every sensor-launched run carries (Postgres only; see the module's docstring).
ROW_STATE_CHECK_KEYS = [nothing_stuck_pending.check_key, no_failed_or_dead_memories.check_key]


def _checks_job(name: str, checks: Sequence[AssetChecksDefinition], description: str):
    """A job of ``checks`` whose Launchpad config is one ``tenants`` list (empty: all)."""
    op_names = [check.node_def.name for check in checks]

    def to_op_config(config: Mapping[str, Any]) -> dict[str, Any]:
        return {"ops": {op: {"config": {"tenants": config["tenants"]}} for op in op_names}}

    return define_asset_job(
        name,
        selection=AssetSelection.checks(*checks),
        description=description,
        config=ConfigMapping(
            config_fn=to_op_config,
            config_schema={
                "tenants": Field(
                    Array(str),
                    default_value=[],
                    description="tenant partition keys (user_id/project_id, as the partition "
                    "list shows them); empty: every tenant",
                )
            },
        ),
    )


TENANT_DRIFT_CHECK_JOB = "tenant_drift_check"
tenant_drift_check = _checks_job(
    TENANT_DRIFT_CHECK_JOB,
    [postgres_and_chroma_agree],
    "Compare tenants' vectors in Postgres and Chroma (ids, and sampled values): the tenants "
    "listed in the config, or every tenant.",
)
TENANT_CHECKS_JOB = "tenant_checks"
tenant_checks_job = _checks_job(
    TENANT_CHECKS_JOB,
    tenant_checks,
    "Run every tenant check on the tenants listed in the config, or on every tenant.",
)


STUCK_PENDING_CHECK_JOB = "stuck_pending_check"
stuck_pending_check = _checks_job(
    STUCK_PENDING_CHECK_JOB,
    [nothing_stuck_pending],
    "Look for memories pending too long with no run serving them: the tenants listed in the "
    "config, or every tenant.",
)


@schedule(
    name="stuck_pending_check_schedule",
    job=stuck_pending_check,
    cron_schedule="*/10 * * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every 10 minutes, the stuck-pending check over every tenant: a stall no run "
    "would notice (no run is launched) shows in the UI.",
)
def stuck_pending_check_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest()  # no tenants named: every tenant


@schedule(
    name="tenant_drift_check_schedule",
    job=tenant_drift_check,
    cron_schedule=Settings.from_env().drift_check_cron,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Runs the Postgres/Chroma agreement check over every tenant, in one run, "
    "on MEMORY_PIPELINE_DRIFT_CHECK_CRON.",
)
def tenant_drift_check_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest()  # no tenants named: every tenant
