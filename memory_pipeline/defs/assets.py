"""The flow as assets: ``memory_log`` rows → each tenant's vectors → the tenant directory.

``memory_log`` is the table applications write (an external asset: Dagster reads it, never
writes it); ``tenant_memory_vectors`` has one partition per tenant (``user_id/project_id``);
``memory_tenants`` lists the tenants with their totals and refreshes itself after tenant runs.
"""

import time
from collections.abc import Iterator, Sequence

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    Backoff,
    DefaultSensorStatus,
    MaterializeResult,
    RetryPolicy,
    asset,
    define_asset_job,
)

from memory_pipeline.defs.executors import backfill_policy
from memory_pipeline.defs.metadata import (
    ROW_SAMPLE_SIZE,
    TENANT_TABLE_SIZE,
    shard_materialization_metadata,
    table,
    tenant_materialization_metadata,
)
from memory_pipeline.defs.partitions import scope_of_run, tenant_partitions
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource
from memory_pipeline.processing import ProcessCounts, ProcessOptions, process
from memory_pipeline.settings import Settings
from memory_pipeline.storage import live_models, tenant_layout, tenant_status, tombstones
from memory_pipeline.storage.database import Database
from memory_pipeline.tenancy import Tenant, shard_collection_name, shard_partition_key
from memory_pipeline.vector_store import ChromaVectorStore

TENANT_VECTORS_ASSET = "tenant_memory_vectors"
MEMORY_LOG_ASSET = "memory_log"
GROUP = "memory"
OWNERS = ["team:memory-pipeline"]
#: Tag a run puts on itself once it claims no more rows, so the sensor hands its tenants' newer
#: rows to another run while this one writes its events (docs/decisions/0011-claims-done-tag.md).
CLAIMS_DONE_TAG = "memory_pipeline/claims_done"
#: Tags a run gets when it starts, so the runs list says whom it serves.
USER_TAG = "memory_pipeline/user_id"
PROJECT_TAG = "memory_pipeline/project_id"
TENANTS_TAG = "memory_pipeline/tenants"
#: Dagster tag values are shown whole; longer ids are cut (the partition tag has them whole).
TAG_VALUE_CHARS = 63

memory_log = AssetSpec(
    MEMORY_LOG_ASSET,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres"},
    description=(
        "The memory_log table in Postgres: the rows applications and imports write (one per "
        "memory, with user_id and project_id naming its tenant). The source of truth; the "
        "pipeline never changes raw_data. Observed with totals by state whenever the tenant "
        "directory refreshes."
    ),
)


def _tag_run(context: AssetExecutionContext, tenants: Sequence[Tenant]) -> None:
    if len(tenants) == 1:
        tags = {
            USER_TAG: tenants[0].user_id[:TAG_VALUE_CHARS],
            PROJECT_TAG: tenants[0].project_id[:TAG_VALUE_CHARS],
        }
    else:
        tags = {TENANTS_TAG: str(len(tenants))}
    context.instance.add_run_tags(context.run.run_id, tags)


class _ProgressLog:
    """Writes the run log's progress line after each committed batch."""

    def __init__(self, context: AssetExecutionContext, total: int) -> None:
        self.context, self.total, self.done = context, total, 0
        self.started = time.monotonic()

    def __call__(self, batch: ProcessCounts) -> None:
        self.done += batch.embedded + batch.skipped + batch.failed + batch.dead
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.context.log.info(
            f"embedding: {self.done}/{max(self.total, self.done)} rows done "
            f"({self.done / elapsed:.1f} rows/s; this batch: {batch.embedded} embedded, "
            f"{batch.skipped} skipped, {batch.failed + batch.dead} failed)"
        )


def _process(
    context: AssetExecutionContext,
    db: Database,
    store: ChromaVectorStore,
    embedder: EmbedderResource,
    tenants: Sequence[Tenant],
    total_rows: int,
) -> dict[str, ProcessCounts]:
    """Load the model (saying so and how long it took) and run the store step."""
    model = embedder.embedder()
    context.log.info(f"loading embedding model {model.model_id} ({total_rows} rows to embed)")
    started = time.monotonic()
    dimension = model.dimension  # loads the model (once per process)
    context.log.info(
        f"embedding model {model.model_id} ready in {time.monotonic() - started:.1f} s "
        f"(dimension {dimension})"
    )
    options = ProcessOptions.from_settings(
        Settings.from_env(), on_batch=_ProgressLog(context, total_rows)
    )
    # small tenants share encode calls; each keeps its own collection and lineage
    return process(db, store, model, tenants, options).per_tenant


@asset(
    name=TENANT_VECTORS_ASSET,
    partitions_def=tenant_partitions,
    deps=[memory_log],
    # A backfill of many tenants runs as one run (a run costs seconds whatever its size), or as
    # runs of MEMORY_PIPELINE_BACKFILL_TENANTS_PER_RUN tenants to spread it over workers.
    backfill_policy=backfill_policy(Settings.from_env()),
    # Chroma or Postgres unavailable fails the run; the rows stay pending and a retry finishes
    # them without duplicates (vector ids are upserted).
    retry_policy=RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL),
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres", "chromadb", "pgvector"},
    description=(
        "One tenant's memories as vectors (partition user_id/project_id): pending memory_log "
        "rows are claimed, their text extracted and batch-embedded, and the vectors written to "
        "the tenant's Chroma collection and to pgvector; deleted memories' vectors are removed. "
        "Each materialization shows the tenant's totals after the run (`total_*`) beside what "
        "the run did (`run_*`), and a sample of memories that are skipped, failed or dead with "
        "why."
    ),
)
def tenant_memory_vectors(
    context: AssetExecutionContext,
    postgres: PostgresResource,
    chroma: ChromaResource,
    embedder: EmbedderResource,
) -> Iterator[MaterializeResult | AssetMaterialization]:
    db = postgres.database()
    model_id = embedder.model_id()
    with db.connection() as conn:
        scope = scope_of_run(conn, context.partition_keys)
        # a shard's run serves the shard's tenants that have something to do (decision 0203)
        in_shards = tenant_layout.tenants_with_work(conn, scope.layout, scope.shards, model_id)
        tenants = list({t.key: t for t in [*scope.tenants, *in_shards]}.values())
        keys = [t.key for t in tenants]
        total_rows = tenant_status.workable_rows(conn, keys)
        # no rows, no deletes, no rollout, no move: the run only records the tenants' totals
        idle = (
            total_rows == 0
            and not tombstones.tenants_with_tombstones(conn, keys)
            and all(m in (None, model_id) for m in live_models.live_models_of(conn, keys).values())
            and not tenant_layout.unplaced_tenants(conn, scope.layout, keys)
        )
    store = chroma.vector_store()  # an unreachable Chroma fails the run here, clearly
    _tag_run(context, tenants)
    if idle:
        context.log.info("nothing to embed or delete; recording the tenants' totals")
        per_tenant = {key: ProcessCounts() for key in keys}
    else:
        per_tenant = _process(context, db, store, embedder, tenants, total_rows)
    context.instance.add_run_tags(context.run.run_id, {CLAIMS_DONE_TAG: "true"})
    run_total = ProcessCounts.total(per_tenant.values())
    context.log.info(f"{len(tenants)} tenant(s) done: {run_total.as_dict()}")

    served = scope.tenants  # named as tenant partitions; the others came with their shard
    with db.connection() as conn:
        totals = tenant_status.tenant_totals(conn, [t.key for t in served], model_id)
        samples = tenant_status.row_samples(
            conn,
            keys,
            ("skipped", "failed", "dead"),
            per_tenant=ROW_SAMPLE_SIZE,
            limit=ROW_SAMPLE_SIZE * len(keys),
        )
        shard_totals = tenant_status.shard_totals(conn, scope.layout, scope.shards, model_id)
    metadata = {
        t.partition_key: tenant_materialization_metadata(
            t, totals[t.key], per_tenant[t.key], samples
        )
        for t in served
    }
    for shard in scope.shards:
        in_shard = [t for t in in_shards if scope.layout.shard_of(t.key) == shard]
        metadata[shard_partition_key(shard)] = shard_materialization_metadata(
            shard,
            shard_totals[shard],
            {t: per_tenant[t.key] for t in in_shard},
            samples,
            shard_collection_name(shard, model_id),
        )
    if len(metadata) == 1:
        (only,) = metadata.values()
        yield MaterializeResult(metadata={**only, "embedding_model": model_id})
        return
    # A ranged run materializes every partition of its range with the output's metadata; each
    # partition's own totals follow as its latest materialization (decision 0202).
    yield MaterializeResult(metadata={"run_tenants": len(tenants), "embedding_model": model_id})
    for partition, entries in metadata.items():
        yield AssetMaterialization(
            asset_key=context.asset_key,
            partition=partition,
            description=f"totals after run {context.run.run_id[:8]}",
            metadata={**entries, "embedding_model": model_id},
        )


TENANT_TABLE_COLUMNS = (
    ("partition", "string"),
    ("user_id", "string"),
    ("project_id", "string"),
    ("tenant_key", "string"),
    ("pending", "int"),
    ("embedded", "int"),
    ("skipped", "int"),
    ("failed", "int"),
    ("dead", "int"),
)


@asset(
    name="memory_tenants",
    deps=[tenant_memory_vectors],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres", "table"},
    # Refreshes itself after tenant runs (the automation sensor below), not on a click.
    automation_condition=(
        (AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated())
        .since_last_handled()
        .with_label("after tenant runs")
        & ~AutomationCondition.in_progress()
    ),
    description=(
        "The tenant directory: tenants' user_id and project_id, partition key (the tenant's own, "
        "or its shard's in a sharded home: `memory-pipeline tenants --user U` finds any tenant) "
        "and tenant_key, and memories by state (the newest 100 tenants), with totals over all; "
        "also records "
        "totals of memory_log as an "
        "observation (the Plots tab of memory_log draws them over time). Refreshed after tenant "
        "runs by the tenant_directory_automation sensor."
    ),
)
def memory_tenants(
    context: AssetExecutionContext, postgres: PostgresResource
) -> Iterator[MaterializeResult | AssetObservation]:
    with postgres.database().connection() as conn:
        tenants = tenant_status.status_counts(conn)
        layout = tenant_layout.read_layout(conn)
    states = ("pending", "embedded", "skipped", "failed", "dead")
    totals = {state: sum(int(t[state]) for t in tenants) for state in states}
    newest = tenants[::-1][:TENANT_TABLE_SIZE]  # status_counts lists the oldest first
    # the partition that serves each tenant: its own, or its shard's (decision 0203)
    rows = [
        {**t, "partition": layout.partition_key(Tenant(t["user_id"], t["project_id"]))}
        for t in newest
    ]
    yield AssetObservation(
        asset_key=AssetKey(MEMORY_LOG_ASSET),
        metadata={
            "tenants": len(tenants),
            "rows": sum(totals.values()),
            **{f"total_{state}": n for state, n in totals.items()},
        },
    )
    yield MaterializeResult(
        metadata={
            "tenant_count": len(tenants),
            "tenant_shards": layout.shards or 0,
            **{f"total_{state}": n for state, n in totals.items()},
            "tenants": table(TENANT_TABLE_COLUMNS, rows),
            "tenants_shown": f"{len(rows)} of {len(tenants)} (newest first)",
        }
    )


tenant_directory_automation = AutomationConditionSensorDefinition(
    "tenant_directory_automation",
    target=AssetSelection.assets(memory_tenants),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Refreshes memory_tenants after tenant runs (its automation condition).",
)

EMBED_JOB = "embed_pending_memories"
embed_pending_memories = define_asset_job(
    EMBED_JOB,
    selection=AssetSelection.assets(tenant_memory_vectors),  # with its checks
    description=(
        "Embed the pending memories of tenant partitions (what pending_rows_sensor launches); "
        "its runs carry the row-state checks."
    ),
)
