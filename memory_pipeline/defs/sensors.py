"""The pending-rows sensor: Postgres decides what is left to do, not a cursor (DESIGN §4).

Every tick it shards the home once it has grown past ``MEMORY_PIPELINE_SHARD_AFTER_TENANTS``
tenants (decision 0203), makes the partitions match the tenants or the shards
(``partitions.sync_tenant_partitions``), asks Postgres which tenants (or shards) have workable
rows, tombstones or vectors to move, and requests runs of the ``embed_pending_memories`` job for
those not held by an active run. No step reads the idle tenants of a sharded home. Consecutive tenants are
grouped into one ranged run up to a row budget (decision 0009). A run is requested for a
*work digest*, the fingerprint of its tenants' pending sets; when a run of that digest finished
and the same work is still pending (the run failed, was canceled, crashed, or claimed nothing),
it is requested again, with backoff, under the next attempt number (decision 0100). The planning
is a pure function, :func:`plan_runs`; this module's Dagster part only reads and writes runs.
"""

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from dagster import (
    MAX_RUNTIME_SECONDS_TAG,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from memory_pipeline.defs.assets import embed_pending_memories, tenant_memory_vectors
from memory_pipeline.defs.checks import ROW_STATE_CHECK_KEYS
from memory_pipeline.defs.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    sync_tenant_partitions,
)
from memory_pipeline.defs.resources import EmbedderResource, PostgresResource
from memory_pipeline.defs.runs import tenants_in_active_runs
from memory_pipeline.settings import Settings
from memory_pipeline.storage import claims, tenant_layout
from memory_pipeline.tenancy import TenantLayout, shard_partition_key

SENSOR_TAG = "memory_pipeline/trigger"
#: The work digest a run was requested for (see :func:`work_digest`).
WORK_TAG = "memory_pipeline/work"
#: Which attempt at that work the run is (0 for the first).
ATTEMPT_TAG = "memory_pipeline/attempt"
#: Budget of one grouped run (decision 0009): rows (pending + tombstones) and tenants; the
#: defaults of MEMORY_PIPELINE_MAX_ROWS_PER_RUN / _MAX_TENANTS_PER_RUN. With several workers
#: (Celery, run pods) a smaller budget spreads a backlog over more runs (docs/deployment.md).
MAX_ROWS_PER_RUN: int = Settings.model_fields["max_rows_per_run"].default
MAX_TENANTS_PER_RUN: int = Settings.model_fields["max_tenants_per_run"].default
#: The daemon loops every 5 s; a minimum one second shorter ticks on every loop (decision 0010).
DAEMON_LOOP_SLACK_SECONDS = 1
#: The longest wait between two attempts at the same work (decision 0100).
MAX_RETRY_DELAY_SECONDS = 600.0
#: How far back finished runs count as attempts at work that is still pending.
ATTEMPT_MEMORY = timedelta(hours=1)
#: At most this many of those runs, the latest first: enough for any work still retrying.
ATTEMPT_RUNS_READ = 1000
FINISHED_STATUSES = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class TenantWork:
    partition_key: str
    rows: int
    fingerprint: str


@dataclass(frozen=True)
class Attempts:
    """Finished runs of one work digest: how many, and when the last one ended (epoch s)."""

    count: int
    last_end: float


@dataclass(frozen=True)
class PlannedRun:
    """A run to request: its tenants (consecutive partitions), work digest and attempt."""

    tenants: tuple[TenantWork, ...]
    digest: str
    attempt: int


@dataclass(frozen=True)
class SensorCursor:
    """What the sensor carries between ticks: when partition keys that are no tenant's were
    first seen (``partitions.sync_tenant_partitions``), and how many ticks requested runs (each
    such tick's run keys are new, decision 0100)."""

    strays: dict[str, float]
    generation: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "SensorCursor":
        data = json.loads(raw) if raw else {}
        if "generation" not in data or "strays" not in data:  # older cursors held strays only
            return cls(strays=data, generation=0)
        return cls(strays=data["strays"], generation=int(data["generation"]))

    def dumps(self) -> str:
        return json.dumps({"strays": self.strays, "generation": self.generation})


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


def work_digest(group: Sequence[TenantWork]) -> str:
    """A digest of the tenants' pending sets: it changes whenever their work changes."""
    return hashlib.sha256(
        "|".join(f"{w.partition_key}={w.fingerprint}" for w in group).encode()
    ).hexdigest()[:24]


def retry_delay(attempt: int, base_seconds: float) -> float:
    """Seconds to wait after the last finished run before attempt number ``attempt``."""
    if attempt <= 0:
        return 0.0
    return min(MAX_RETRY_DELAY_SECONDS, base_seconds * 2 ** (attempt - 1))


def plan_runs(
    order: Sequence[str],
    work: Iterable[TenantWork],
    finished: Mapping[str, Attempts],
    *,
    now: float,
    base_delay_seconds: float,
    max_rows: int = MAX_ROWS_PER_RUN,
    max_tenants: int = MAX_TENANTS_PER_RUN,
) -> tuple[list[PlannedRun], int]:
    """The runs to request now, and how many are waiting out their retry delay.

    Work already attempted (its digest has finished runs) is attempted again under the next
    attempt number once :func:`retry_delay` has passed. A group of tenants that was attempted
    is split into one run per tenant, so a tenant whose runs keep failing retries alone and
    never holds back the others.
    """
    work = list(work)
    alone = [w for w in work if work_digest([w]) in finished]
    alone_keys = {w.partition_key for w in alone}
    groups = group_into_runs(
        order,
        [w for w in work if w.partition_key not in alone_keys],
        max_rows=max_rows,
        max_tenants=max_tenants,
    )
    candidates: list[list[TenantWork]] = [[w] for w in alone]
    for group in groups:
        if len(group) > 1 and work_digest(group) in finished:
            candidates.extend([w] for w in group)
        else:
            candidates.append(group)
    planned: list[PlannedRun] = []
    waiting = 0
    for group in candidates:
        digest = work_digest(group)
        past = finished.get(digest)
        attempt = past.count if past else 0
        if past and now - past.last_end < retry_delay(attempt, base_delay_seconds):
            waiting += 1
            continue
        planned.append(PlannedRun(tuple(group), digest, attempt))
    return planned, waiting


def _run_request(run: PlannedRun, generation: int, max_runtime_seconds: float) -> RunRequest:
    # A run key names the work, its attempt and the tick that asked for it: Dagster never
    # launches a key twice, so one may repeat only when a tick is evaluated again (decision 0100).
    suffix = f":{run.attempt}:{generation}"
    tags = {
        SENSOR_TAG: "pending_rows_sensor",
        WORK_TAG: run.digest,
        ATTEMPT_TAG: str(run.attempt),
    }
    if max_runtime_seconds:
        # Dagster's run monitoring ends a run hung past this (a wedged store); its work retries
        tags[MAX_RUNTIME_SECONDS_TAG] = str(int(max_runtime_seconds))
    first, last = run.tenants[0], run.tenants[-1]
    if len(run.tenants) == 1:
        return RunRequest(
            run_key=f"{first.partition_key}:{run.digest}{suffix}",
            partition_key=first.partition_key,
            tags=tags,
            asset_selection=[tenant_memory_vectors.key],
            asset_check_keys=ROW_STATE_CHECK_KEYS,
        )
    return RunRequest(
        run_key=f"range:{run.digest}{suffix}",
        tags={
            **tags,
            PARTITION_RANGE_START_TAG: first.partition_key,
            PARTITION_RANGE_END_TAG: last.partition_key,
        },
        asset_selection=[tenant_memory_vectors.key],
        asset_check_keys=ROW_STATE_CHECK_KEYS,
    )


def pending_work(conn: psycopg.Connection, layout: TenantLayout) -> list[TenantWork]:
    """The work of each partition: a tenant's, or in a sharded home a shard's (its tenants'
    rows, deletes and vectors still to move), with the fingerprint a run key is made of."""
    if layout.shards is not None:
        return [
            TenantWork(shard_partition_key(w.shard), w.size, w.fingerprint)
            for w in tenant_layout.shards_with_work(conn, layout.shards)
        ]
    return [
        TenantWork(w.tenant.partition_key, w.rows + w.tombstones, w.fingerprint)
        for w in claims.workable_tenants(conn)
    ]


def daemon_minimum_interval(interval_seconds: int) -> int:
    """The ``minimum_interval_seconds`` under which the daemon ticks every ``interval_seconds``."""
    return max(1, interval_seconds - DAEMON_LOOP_SLACK_SECONDS)


def _finished_attempts(context: SensorEvaluationContext) -> dict[str, Attempts]:
    """Finished sensor runs of the last :data:`ATTEMPT_MEMORY`, by work digest."""
    records = context.instance.get_run_records(
        filters=RunsFilter(
            statuses=FINISHED_STATUSES,
            tags={SENSOR_TAG: "pending_rows_sensor"},
            updated_after=datetime.now(UTC) - ATTEMPT_MEMORY,
        ),
        limit=ATTEMPT_RUNS_READ,
    )
    finished: dict[str, Attempts] = {}
    for record in records:
        digest = record.dagster_run.tags.get(WORK_TAG)
        if digest is None:
            continue
        ended = record.end_time or record.update_timestamp.timestamp()
        past = finished.get(digest)
        finished[digest] = Attempts(
            (past.count if past else 0) + 1, max(ended, past.last_end if past else 0.0)
        )
    return finished


@sensor(
    name="pending_rows_sensor",
    job=embed_pending_memories,
    minimum_interval_seconds=daemon_minimum_interval(Settings.from_env().sensor_interval_seconds),
    default_status=DefaultSensorStatus.RUNNING,
    description="Launches tenant runs for pending/failed-due memory rows and deletes (state in "
    "Postgres); work a finished run left pending is requested again, with backoff.",
)
def pending_rows_sensor(
    context: SensorEvaluationContext, postgres: PostgresResource, embedder: EmbedderResource
) -> SensorResult | SkipReason:
    cursor = SensorCursor.parse(context.cursor)
    settings = Settings.from_env()
    with postgres.database().connection() as conn:
        # past the threshold the home becomes sharded, once (decision 0203)
        layout = tenant_layout.ensure_layout(
            conn, shards=settings.tenant_shards, after_tenants=settings.shard_after_tenants
        )
        # partitions follow the tenants (or the shards): new ones added, others removed
        sync = sync_tenant_partitions(
            context.instance,
            conn,
            tenant_memory_vectors.key,
            embedder.model_id(),
            strays_seen=cursor.strays,
        )
        pending = pending_work(conn, layout)
    if sync.added or sync.removed:
        context.log.info(f"partitions: {len(sync.added)} added, {len(sync.removed)} removed")
    if not pending:
        context.update_cursor(SensorCursor(sync.strays, cursor.generation).dumps())
        return SkipReason("no pending memory rows")
    order = sync.partition_keys
    busy = tenants_in_active_runs(context.instance, order, tags={SENSOR_TAG: "pending_rows_sensor"})
    work = [w for w in pending if w.partition_key not in busy]
    planned, waiting = plan_runs(
        order,
        work,
        _finished_attempts(context),
        now=time.time(),
        base_delay_seconds=settings.run_retry_backoff_seconds,
        max_rows=settings.max_rows_per_run,
        max_tenants=settings.max_tenants_per_run,
    )
    if waiting:
        context.log.info(f"{waiting} run(s) of unfinished work wait out their retry delay")
    generation = cursor.generation + 1 if planned else cursor.generation
    context.update_cursor(SensorCursor(sync.strays, generation).dumps())
    return SensorResult(
        run_requests=[
            _run_request(p, generation, settings.run_max_runtime_seconds) for p in planned
        ]
    )
