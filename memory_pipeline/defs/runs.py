"""Which tenants the active runs of the instance serve (the sensor's and the checks' view)."""

from collections.abc import Sequence

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from memory_pipeline.defs.assets import CLAIMS_DONE_TAG
from memory_pipeline.defs.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
)

#: Runs that may still claim rows (a canceling run may be mid-batch).
ACTIVE_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def tenants_in_active_runs(
    instance: DagsterInstance,
    order: Sequence[str],
    *,
    tags: dict[str, str] | None = None,
    exclude_run_id: str | None = None,
) -> set[str]:
    """Partition keys of the tenants that an active run (with ``tags``) will still claim rows
    of: runs tagged claims-done are only writing their events and hold nothing."""
    runs = instance.get_runs(filters=RunsFilter(statuses=ACTIVE_STATUSES, tags=tags or {}))
    position = {key: i for i, key in enumerate(order)}
    busy: set[str] = set()
    for run in runs:
        run_tags = run.tags
        if run.run_id == exclude_run_id or run_tags.get(CLAIMS_DONE_TAG) == "true":
            continue
        if PARTITION_TAG in run_tags:
            busy.add(run_tags[PARTITION_TAG])
        start = run_tags.get(PARTITION_RANGE_START_TAG)
        end = run_tags.get(PARTITION_RANGE_END_TAG)
        if start in position and end in position:
            busy.update(order[position[start] : position[end] + 1])
    return busy
