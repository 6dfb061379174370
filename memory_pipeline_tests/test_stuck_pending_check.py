"""The stuck-pending check names rows pending too long while no run serves their tenant."""

from dagster import AssetSelection, DagsterRunStatus, materialize

from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.checks import nothing_stuck_pending
from memory_pipeline.defs.partitions import PARTITION_TAG, TENANT_PARTITIONS_NAME
from memory_pipeline_tests.dagster_runs import record_run


def _check(tenant, instance, resources):
    result = materialize(
        [tenant_memory_vectors, nothing_stuck_pending],
        selection=AssetSelection.checks(nothing_stuck_pending),
        run_config={
            "ops": {
                nothing_stuck_pending.node_def.name: {"config": {"tenants": [tenant.partition_key]}}
            }
        },
        instance=instance,
        resources=resources,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_rows_pending_too_long_fail_the_check_with_their_ids_unless_a_run_serves_them(
    store, new_tenant, instance, resources
):
    tenant = new_tenant()
    log_id = store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "forgotten"})
    with store.db.connection() as conn:
        conn.execute("SET LOCAL session_replication_role = replica")  # no updated_at trigger
        conn.execute(
            "UPDATE memory_log SET updated_at = now() - interval '1 hour' WHERE id = %s", (log_id,)
        )
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.partition_key])

    stalled = _check(tenant, instance, resources)
    assert not stalled.passed
    assert str(log_id) in stalled.metadata["stuck_row_ids"].value

    record_run(  # a run that will claim the tenant's rows: served, not stuck
        instance, status=DagsterRunStatus.STARTED, tags={PARTITION_TAG: tenant.partition_key}
    )
    served = _check(tenant, instance, resources)
    assert served.passed
