"""Tenant partitions follow the tenants: readable keys, homes moved over, phantoms refused."""

import pytest
from dagster import AssetMaterialization, AssetRecordsFilter, materialize

from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.partitions import (
    TENANT_PARTITIONS_NAME,
    NotATenantError,
    sync_tenant_partitions,
    tenants_of_partitions,
)
from memory_pipeline.tenancy import Tenant
from memory_pipeline_tests.dagster_runs import record_run


def _sync(store, instance, **options):
    with store.db.connection() as conn:
        return sync_tenant_partitions(
            instance, conn, tenant_memory_vectors.key, store.embedder.model_id, **options
        )


def _partitions(instance) -> list[str]:
    return list(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))


def _latest(instance, partition: str):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=tenant_memory_vectors.key, asset_partitions=[partition]),
        limit=1,
    ).records
    return records[0].asset_materialization if records else None


def test_every_tenant_gets_a_partition_named_by_its_user_and_project(store, instance):
    tenant = Tenant("ui user one", "ui/project 1")  # a space and a '/' among the ids
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "readable"})

    sync = _sync(store, instance)

    assert "ui user one/ui%2Fproject 1" in sync.added
    assert _partitions(instance) == sync.partition_keys
    with store.db.connection() as conn:
        assert tenants_of_partitions(conn, ["ui user one/ui%2Fproject 1"]) == [tenant]


def test_an_older_homes_hashed_partitions_move_to_readable_keys_with_their_totals(
    store, new_tenant, instance
):
    tenant = new_tenant("upgraded")
    for i in range(2):
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": f"old home {i}"})
    store.create_memory_log(tenant.user_id, tenant.project_id, {})  # nothing to embed: skipped
    store.process_pending(tenant.user_id, tenant.project_id)
    # the home as the previous version left it: partitions keyed by tenant_key, with history
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.key])
    instance.report_runless_asset_event(
        AssetMaterialization(tenant_memory_vectors.key, partition=tenant.key, metadata={"n": 1})
    )

    sync = _sync(store, instance)

    assert sync.moved == {tenant.key: tenant.partition_key}
    partitions = _partitions(instance)
    assert tenant.partition_key in partitions and tenant.key not in partitions
    moved = _latest(instance, tenant.partition_key)
    assert moved.metadata["renamed_from"].value == tenant.key
    assert moved.metadata["user_id"].value == tenant.user_id
    assert moved.metadata["total_embedded"].value == 2
    assert moved.metadata["total_skipped"].value == 1
    assert moved.metadata["total_vectors"].value == 2
    assert _latest(instance, tenant.key) is not None  # the old history stays in the event log
    assert not _sync(store, instance).moved  # moved once


def test_partitions_of_purged_tenants_and_keys_typed_by_hand_go_after_a_grace_period(
    store, new_tenant, instance
):
    kept, purged = new_tenant("kept"), new_tenant("purged")
    for t in (kept, purged):
        store.create_memory_log(t.user_id, t.project_id, {"content": "here"})
    _sync(store, instance)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["alice", "ghost/project"])
    store.purge_tenant(purged.user_id, purged.project_id)

    first = _sync(store, instance, now=1000.0, grace_seconds=300)
    strays = {"alice", "ghost/project", purged.partition_key}
    assert strays <= set(first.strays) and not strays & set(first.removed)
    assert first.strays["alice"] == 1000.0  # long enough to launch it and read why it fails
    sync = _sync(store, instance, now=1300.0, grace_seconds=300, strays_seen=first.strays)

    assert strays <= set(sync.removed)
    assert not strays & set(sync.strays)
    assert kept.partition_key in _partitions(instance)
    assert purged.partition_key not in _partitions(instance)


@pytest.mark.parametrize("phantom", ["alice", "ghost/project"])
def test_materializing_a_partition_that_is_no_tenant_fails_and_says_why(
    store, instance, resources, phantom
):
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [phantom])

    result = materialize(
        [tenant_memory_vectors],
        partition_key=phantom,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert "name no tenant; nothing was done" in message
    assert repr(phantom) in message
    assert _latest(instance, phantom) is None  # not shown as materialized


def test_a_key_without_user_and_project_is_refused_with_the_expected_form(store):
    with store.db.connection() as conn, pytest.raises(NotATenantError, match="expected user_id"):
        tenants_of_partitions(conn, ["alice"])


def test_a_key_that_a_queued_or_running_run_names_stays_until_the_run_ends(store, instance):
    from dagster import DagsterRunStatus

    from memory_pipeline.defs.partitions import PARTITION_TAG

    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["typed/by hand"])
    run = record_run(
        instance, status=DagsterRunStatus.STARTED, tags={PARTITION_TAG: "typed/by hand"}
    )

    kept = _sync(store, instance, grace_seconds=0)
    assert "typed/by hand" in kept.partition_keys  # its run fails, saying why
    instance.report_run_failed(run)
    assert "typed/by hand" in _sync(store, instance, grace_seconds=0).removed
