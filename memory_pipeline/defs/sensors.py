"""The pending-rows sensor: Postgres decides what is left to do, not a cursor (DESIGN §4).

Every tick it makes the tenant partitions match the tenants (``partitions.sync_tenant_partitions``:
new tenants added in one statement, purged ones removed), asks Postgres which tenants have
workable rows or tombstones, and requests runs of the ``embed_pending_memories`` job.
Consecutive tenants (in partition order) are grouped into one ranged run up to a row budget,
because a run costs seconds whatever its size; per-tenant lineage stays visible (each partition
of the range is materialized). Run keys are built from a fingerprint of each tenant's pending
set, so new work always gets a new key, and tenants that already have a queued or running run
are left for the next tick, unless that run has tagged itself as claiming no more rows. Runs
carry the row-state checks; the Postgres/Chroma agreement check has its own schedule (see
``checks``).
"""

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from memory_pipeline.defs.assets import (
    CLAIMS_DONE_TAG,
    embed_pending_memories,
    tenant_memory_vectors,
)
from memory_pipeline.defs.checks import ROW_STATE_CHECK_KEYS
from memory_pipeline.defs.partitions import sync_tenant_partitions
from memory_pipeline.defs.resources import EmbedderResource, PostgresResource
from memory_pipeline.settings import Settings
from memory_pipeline.storage import memory_logs as q
from memory_pipeline.tenancy import tenant_partition_key

SENSOR_TAG = "memory_pipeline/trigger"
#: Budget of one grouped run: rows (pending + tombstones) and tenants. Runs of one machine
#: share its cores: measured with 10,000 rows over 1,000 tenants on 2 cores, five runs of
#: 2,000 rows (two at a time, each model using every core) took 497 s to embed everything,
#: while one run embeds ~58 rows/s on its own. Rows are claimed in batches whatever the budget.
MAX_ROWS_PER_RUN = 10_000
MAX_TENANTS_PER_RUN = 1000
#: Dagster's sensor daemon starts an evaluation loop every 5 s and skips a sensor whose last
#: tick started less than its minimum interval ago. Loops are 5 s apart give or take
#: milliseconds, so a minimum of exactly 5 s skipped about every other loop (bench C's daemon
#: log: 45 gaps of 5 s, 41 of 10 s). A second of slack makes the configured interval the one
#: observed (rounded up to the daemon's 5-s loop).
DAEMON_LOOP_SLACK_SECONDS = 1
ACTIVE_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class TenantWork:
    partition_key: str
    rows: int
    fingerprint: str


def group_into_runs(
    order: Sequence[str], work: Iterable[TenantWork], *, max_rows: int, max_tenants: int
) -> list[list[TenantWork]]:
    """Group tenants that are adjacent in partition ``order`` into runs within the budgets.

    A group's tenants are consecutive partitions, so the group is exactly a partition range.
    """
    position = {key: i for i, key in enumerate(order)}
    ordered = sorted(work, key=lambda w: position[w.partition_key])
    groups: list[list[TenantWork]] = []
    current: list[TenantWork] = []
    rows = 0
    for item in ordered:
        adjacent = (
            bool(current)
            and position[item.partition_key] == position[current[-1].partition_key] + 1
        )
        fits = rows + item.rows <= max_rows and len(current) < max_tenants
        if current and adjacent and fits:
            current.append(item)
            rows += item.rows
        else:
            if current:
                groups.append(current)
            current, rows = [item], item.rows
    if current:
        groups.append(current)
    return groups


def _run_request(group: list[TenantWork]) -> RunRequest:
    digest = hashlib.sha256(
        "|".join(f"{w.partition_key}={w.fingerprint}" for w in group).encode()
    ).hexdigest()[:24]
    tags = {SENSOR_TAG: "pending_rows_sensor"}
    if len(group) == 1:
        return RunRequest(
            run_key=f"{group[0].partition_key}:{digest}",
            partition_key=group[0].partition_key,
            tags=tags,
            asset_selection=[tenant_memory_vectors.key],
            asset_check_keys=ROW_STATE_CHECK_KEYS,
        )
    return RunRequest(
        run_key=f"range:{digest}",
        tags={
            **tags,
            ASSET_PARTITION_RANGE_START_TAG: group[0].partition_key,
            ASSET_PARTITION_RANGE_END_TAG: group[-1].partition_key,
        },
        asset_selection=[tenant_memory_vectors.key],
        asset_check_keys=ROW_STATE_CHECK_KEYS,
    )


def daemon_minimum_interval(interval_seconds: int) -> int:
    """The ``minimum_interval_seconds`` under which the daemon ticks every ``interval_seconds``."""
    return max(1, interval_seconds - DAEMON_LOOP_SLACK_SECONDS)


def _tenants_in_active_runs(context: SensorEvaluationContext, order: Sequence[str]) -> set[str]:
    runs = context.instance.get_runs(
        filters=RunsFilter(statuses=ACTIVE_STATUSES, tags={SENSOR_TAG: "pending_rows_sensor"})
    )
    position = {key: i for i, key in enumerate(order)}
    busy: set[str] = set()
    for run in runs:
        tags = run.tags
        if tags.get(CLAIMS_DONE_TAG) == "true":  # only writing its events now (see assets)
            continue
        if PARTITION_NAME_TAG in tags:
            busy.add(tags[PARTITION_NAME_TAG])
        start, end = (
            tags.get(ASSET_PARTITION_RANGE_START_TAG),
            tags.get(ASSET_PARTITION_RANGE_END_TAG),
        )
        if start in position and end in position:
            busy.update(order[position[start] : position[end] + 1])
    return busy


@sensor(
    name="pending_rows_sensor",
    job=embed_pending_memories,
    minimum_interval_seconds=daemon_minimum_interval(Settings.from_env().sensor_interval_seconds),
    default_status=DefaultSensorStatus.RUNNING,
    description="Launches tenant runs for pending/failed-due memory rows and deletes (state in Postgres).",
)
def pending_rows_sensor(
    context: SensorEvaluationContext, postgres: PostgresResource, embedder: EmbedderResource
) -> SensorResult | SkipReason:
    with postgres.database().connection() as conn:
        # partitions follow the tenants: new ones added, purged ones removed (see partitions)
        sync = sync_tenant_partitions(
            context.instance, conn, tenant_memory_vectors.key, embedder.model_id()
        )
        tenants = q.workable_tenants(conn)
    if sync.added or sync.removed:
        context.log.info(f"tenant partitions: {len(sync.added)} added, {len(sync.removed)} removed")
    if not tenants:
        return SkipReason("no pending memory rows")
    order = sync.partition_keys
    busy = _tenants_in_active_runs(context, order)
    work = [
        TenantWork(
            tenant_partition_key(t["user_id"], t["project_id"]),
            int(t["rows"]) + int(t["tombstones"]),
            t["fingerprint"],
        )
        for t in tenants
        if tenant_partition_key(t["user_id"], t["project_id"]) not in busy
    ]
    groups = group_into_runs(
        order, work, max_rows=MAX_ROWS_PER_RUN, max_tenants=MAX_TENANTS_PER_RUN
    )
    return SensorResult(run_requests=[_run_request(g) for g in groups])
