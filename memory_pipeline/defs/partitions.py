"""Tenant partitions: one dynamic partition per tenant, keyed ``enc(user_id)/enc(project_id)``,
or, in a sharded home, one per tenant shard, keyed ``shard-0042`` (decision 0203).

The key rules live in :mod:`memory_pipeline.tenancy`; ``tenant_key`` stays the Chroma and SQL
key. The partitions follow ``memory_tenant`` and the home's layout: :func:`sync_tenant_partitions`
(called by the pending-rows sensor on every tick) adds a partition for each new tenant (or each
shard), removes partitions that are no tenant's or shard's (purged tenants, keys typed into the
UI, a sharded home's old tenant partitions), and so moves homes that keyed partitions by
``tenant_key`` (before readable keys) over to readable ones (decision 0200).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psycopg
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    DynamicPartitionsDefinition,
    Failure,
    RunsFilter,
)

from memory_pipeline.defs.metadata import tenant_identity, totals_metadata
from memory_pipeline.storage import tenant_layout, tenant_status
from memory_pipeline.tenancy import (
    Tenant,
    TenantLayout,
    shard_from_partition_key,
    tenant_from_partition_key,
)

TENANT_PARTITIONS_NAME = "tenants"
#: Dagster's run tags for a run's partition or partition range. Dagster keeps its constants for
#: them in the private ``dagster._core.storage.tags``; these are their values, as documented.
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
#: How long a partition that is no tenant's (a key typed into the UI, a purged tenant's) stays
#: after the sensor first sees it: long enough to launch it from the UI and read why it fails.
STRAY_GRACE_SECONDS = 300.0
ACTIVE_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]

tenant_partitions = DynamicPartitionsDefinition(name=TENANT_PARTITIONS_NAME)


class NotATenantError(ValueError):
    """A partition key that names no tenant (a typo, a purged tenant, a key of another rule)."""


@dataclass(frozen=True)
class PartitionSync:
    """What :func:`sync_tenant_partitions` changed, and the partition keys in order after it."""

    partition_keys: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: old ``tenant_key`` partition → the same tenant's readable partition
    moved: dict[str, str] = field(default_factory=dict)
    #: partitions that are no tenant's, still kept, and when they were first seen (epoch s)
    strays: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunScope:
    """What partition keys name: tenants (placed), and the shards of a sharded home."""

    tenants: list[Tenant]
    shards: list[int]
    layout: TenantLayout


def scope_of_partitions(conn: psycopg.Connection, partition_keys: Sequence[str]) -> RunScope:
    """The tenants and shards of ``partition_keys``, in their order.

    Raises :class:`NotATenantError` naming every key that is no tenant's partition key or whose
    tenant has no memories (never written, or purged), and every shard key the home's layout
    does not have.
    """
    layout = tenant_layout.read_layout(conn)
    problems: list[str] = []
    tenants: list[Tenant] = []
    shards: list[int] = []
    for key in partition_keys:
        shard = shard_from_partition_key(key)
        if shard is not None:
            if layout.shards is None or shard >= layout.shards:
                problems.append(
                    f"{key!r} is no shard of this home "
                    f"({'not sharded' if layout.shards is None else f'{layout.shards} shards'})"
                )
            else:
                shards.append(shard)
            continue
        try:
            tenants.append(tenant_from_partition_key(key))
        except ValueError as exc:
            problems.append(str(exc))
    recorded = tenant_status.tenants_of(conn, [t.key for t in tenants])
    for tenant in tenants:
        if tenant.key not in recorded:
            problems.append(
                f"{tenant.partition_key!r} is no tenant: no memory of user_id={tenant.user_id!r} "
                f"project_id={tenant.project_id!r} exists (purged, or never written)"
            )
    if problems:
        raise NotATenantError(
            f"{len(problems)} partition(s) of this run name no tenant; nothing was done. "
            + "; ".join(problems[:10])
        )
    return RunScope([recorded[t.key] for t in tenants], shards, layout)


def tenants_of_partitions(conn: psycopg.Connection, partition_keys: Sequence[str]) -> list[Tenant]:
    """Every tenant ``partition_keys`` name (a shard's key: all of its tenants), placed.

    Raises :class:`NotATenantError` as :func:`scope_of_partitions` does.
    """
    scope = scope_of_partitions(conn, partition_keys)
    in_shards = tenant_layout.tenants_of_shards(conn, scope.layout, scope.shards)
    return list({t.key: t for t in [*scope.tenants, *in_shards]}.values())


def tenants_of_run(conn: psycopg.Connection, partition_keys: Sequence[str]) -> list[Tenant]:
    """:func:`tenants_of_partitions` for a check: a key naming no tenant fails it with
    Dagster's :class:`~dagster.Failure`, not retried (retrying cannot make the key a tenant)."""
    try:
        return tenants_of_partitions(conn, partition_keys)
    except NotATenantError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None


def scope_of_run(conn: psycopg.Connection, partition_keys: Sequence[str]) -> RunScope:
    """:func:`scope_of_partitions` for a run, failing it as :func:`tenants_of_run` does."""
    try:
        return scope_of_partitions(conn, partition_keys)
    except NotATenantError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None


def partitions_of_active_runs(instance: DagsterInstance) -> set[str]:
    """The partition keys that queued or running runs name (a range by its two ends)."""
    runs = instance.get_runs(filters=RunsFilter(statuses=ACTIVE_RUN_STATUSES))
    tags = (PARTITION_TAG, PARTITION_RANGE_START_TAG, PARTITION_RANGE_END_TAG)
    return {run.tags[tag] for run in runs for tag in tags if tag in run.tags}


def sync_tenant_partitions(
    instance: DagsterInstance,
    conn: psycopg.Connection,
    asset_key: AssetKey,
    model_id: str,
    *,
    strays_seen: Mapping[str, float] | None = None,
    now: float | None = None,
    grace_seconds: float = STRAY_GRACE_SECONDS,
) -> PartitionSync:
    """Make the partitions the tenants of ``memory_tenant`` in their order, or, in a sharded
    home, its shards (:func:`_sync_shard_partitions`).

    New tenants get a partition at once. A partition keyed by a tenant's ``tenant_key`` (homes
    from before readable keys) is replaced by the tenant's readable one, which gets a runless
    materialization of ``asset_key`` with the tenant's totals (its history stays under the old
    key in the asset's event log). Any other key is a stray (typed into the UI, a purged
    tenant's): it goes ``grace_seconds`` after it was first seen (``strays_seen``, as returned
    in the previous result's ``strays``), so a run launched on it fails saying why. No key that
    a queued or running run names is removed.
    """
    now = time.time() if now is None else now
    seen = dict(strays_seen or {})
    current = list(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    layout = tenant_layout.read_layout(conn)
    if layout.sharded:
        return _sync_shard_partitions(instance, layout, current, seen, now, grace_seconds)
    tenants = tenant_status.all_tenants(conn)
    wanted = {t.partition_key: t for t in tenants}
    current_set = set(current)
    added = [t.partition_key for t in tenants if t.partition_key not in current_set]
    by_tenant_key = {t.key: t for t in tenants}
    unwanted = [key for key in current if key not in wanted]
    first_seen = {key: seen.get(key, now) for key in unwanted if key not in by_tenant_key}
    due = [
        key for key in unwanted if key in by_tenant_key or now - first_seen[key] >= grace_seconds
    ]
    in_use = partitions_of_active_runs(instance) if due else set()
    removed = [key for key in due if key not in in_use]
    moved = {
        key: by_tenant_key[key].partition_key
        for key in removed
        if key in by_tenant_key and by_tenant_key[key].partition_key in added
    }
    if added:  # one statement for any number (the daemon's own path checks key by key)
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, added)
    for key in removed:
        instance.delete_dynamic_partition(TENANT_PARTITIONS_NAME, key)
    if moved:
        totals = tenant_status.tenant_totals(conn, list(moved), model_id)
        for old_key, new_key in moved.items():
            tenant = by_tenant_key[old_key]
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=asset_key,
                    partition=new_key,
                    description="tenant partition renamed from its tenant_key on upgrade",
                    metadata={
                        **tenant_identity(tenant),
                        **totals_metadata(totals[old_key]),
                        "renamed_from": old_key,
                    },
                )
            )
    gone = set(removed)
    return PartitionSync(
        partition_keys=[key for key in current if key not in gone] + added,
        added=added,
        removed=removed,
        moved=moved,
        strays={key: t for key, t in first_seen.items() if key not in gone},
    )


def _sync_shard_partitions(
    instance: DagsterInstance,
    layout: TenantLayout,
    current: list[str],
    seen: Mapping[str, float],
    now: float,
    grace_seconds: float,
) -> PartitionSync:
    """A sharded home's partitions: its shards, added in shard order. Every other key (the
    tenant partitions of before, keys typed into the UI) is a stray that goes after
    ``grace_seconds``, unless a queued or running run names it. Costs no read of the tenants."""
    wanted = layout.partition_keys()
    current_set, wanted_set = set(current), set(wanted)
    added = [key for key in wanted if key not in current_set]
    unwanted = [key for key in current if key not in wanted_set]
    first_seen = {key: seen.get(key, now) for key in unwanted}
    due = [key for key in unwanted if now - first_seen[key] >= grace_seconds]
    in_use = partitions_of_active_runs(instance) if due else set()
    removed = [key for key in due if key not in in_use]
    if added:
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, added)
    for key in removed:
        instance.delete_dynamic_partition(TENANT_PARTITIONS_NAME, key)
    gone = set(removed)
    return PartitionSync(
        partition_keys=[key for key in current if key not in gone] + added,
        added=added,
        removed=removed,
        strays={key: t for key, t in first_seen.items() if key not in gone},
    )
