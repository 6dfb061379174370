"""The Dagster layer with the real resources: definitions, sensor, partitioned materializations."""

import psycopg
from dagster import DagsterRunStatus, RunRequest, SensorResult, build_sensor_context, materialize

from memory_pipeline.defs.assets import CLAIMS_DONE_TAG, tenant_memory_vectors
from memory_pipeline.defs.checks import tenant_checks
from memory_pipeline.defs.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
    TENANT_PARTITIONS_NAME,
)
from memory_pipeline.defs.sensors import (
    SENSOR_TAG,
    TenantWork,
    daemon_minimum_interval,
    group_into_runs,
    pending_rows_sensor,
)
from memory_pipeline_tests.dagster_runs import record_run


def _evaluate_sensor(instance, resources) -> tuple[list[RunRequest], list[str]]:
    """One sensor tick: its run requests, and the tenant partitions afterwards.

    The sensor adds new tenants' partitions itself (one statement), so the result carries no
    partition requests for the daemon to apply.
    """
    context = build_sensor_context(
        instance=instance,
        resources={"postgres": resources["postgres"], "embedder": resources["embedder"]},
    )
    result = pending_rows_sensor(context)
    assert isinstance(result, SensorResult)
    assert not result.dynamic_partitions_requests
    return list(result.run_requests or []), list(
        instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME)
    )


def _covered(requests: list[RunRequest], order: list[str]) -> dict[str, str]:
    """partition key → run key of the request that covers it."""
    covered: dict[str, str] = {}
    for request in requests:
        if request.partition_key:
            covered[request.partition_key] = request.run_key
        else:
            start = order.index(request.tags[PARTITION_RANGE_START_TAG])
            end = order.index(request.tags[PARTITION_RANGE_END_TAG])
            for key in order[start : end + 1]:
                covered[key] = request.run_key
    return covered


def test_definitions_load_with_assets_sensor_job_and_schedule():
    from memory_pipeline.definitions import defs

    repo = defs.get_repository_def()
    assert repo.has_sensor_def("pending_rows_sensor")
    assert repo.has_schedule_def("bulk_import_schedule")
    assert repo.has_job("bulk_import")
    assert repo.has_job("repair_chroma_from_pgvector")
    assert repo.has_job("tenant_drift_check")
    assert repo.has_job("tenant_checks")
    assert repo.has_job("embed_pending_memories")
    assert repo.has_sensor_def("tenant_directory_automation")
    assert repo.has_schedule_def("tenant_drift_check_schedule")
    check_names = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert check_names == {
        "nothing_stuck_pending",
        "no_failed_or_dead_memories",
        "postgres_and_chroma_agree",
    }
    assert (
        defs.resolve_assets_def("tenant_memory_vectors").partitions_def.name
        == TENANT_PARTITIONS_NAME
    )


def test_the_sensor_runs_by_default():
    from dagster import DefaultSensorStatus

    assert pending_rows_sensor.default_status == DefaultSensorStatus.RUNNING


def test_the_sensor_ticks_on_every_daemon_loop_of_its_interval():
    # the daemon's loop starts every 5 s; a minimum of exactly 5 s skipped every other loop
    assert pending_rows_sensor.minimum_interval_seconds == 4  # the default interval is 5 s
    assert daemon_minimum_interval(30) == 29
    assert daemon_minimum_interval(1) == 1


def test_sensor_adds_partitions_and_requests_runs_for_every_tenant_with_pending_rows(
    store, new_tenant, instance, resources
):
    tenants = [new_tenant() for _ in range(3)]
    for t in tenants:
        store.create_memory_log(t.user_id, t.project_id, {"content": f"pending for {t.user_id}"})

    requests, order = _evaluate_sensor(instance, resources)

    assert {t.partition_key for t in tenants} <= set(order)
    covered = _covered(requests, order)
    assert {t.partition_key for t in tenants} <= set(covered)
    assert len({r.run_key for r in requests}) == len(requests)
    # sensor runs carry the Postgres-only checks; the Chroma comparison has its own schedule
    for request in requests:
        assert request.asset_selection == [tenant_memory_vectors.key]
        assert {k.name for k in request.asset_check_keys} == {
            "nothing_stuck_pending",
            "no_failed_or_dead_memories",
        }


def test_sensor_finds_a_row_committed_after_a_higher_id(
    store, new_tenant, instance, resources, database_url
):
    tenant = new_tenant()
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "first"})
    store.process_pending(tenant.user_id, tenant.project_id)
    slow = psycopg.connect(database_url)
    try:
        slow.execute(
            "INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data) VALUES (%s, %s, '', %s)",
            (
                tenant.user_id,
                tenant.project_id,
                psycopg.types.json.Jsonb({"content": "slow, lower id"}),
            ),
        )
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "fast, higher id"})
        first_requests, order = _evaluate_sensor(instance, resources)
        first_key = _covered(first_requests, order)[tenant.partition_key]
        store.process_pending(tenant.user_id, tenant.project_id)  # the run: embeds the fast row
        slow.commit()
    finally:
        slow.close()

    second_requests, order = _evaluate_sensor(instance, resources)

    second = _covered(second_requests, order)
    assert tenant.partition_key in second
    assert second[tenant.partition_key] != first_key  # new pending set, new run key


def test_sensor_run_key_is_stable_when_a_tick_is_evaluated_again(
    store, new_tenant, instance, resources
):
    # Same pending set, same cursor (the daemon died before storing it): the same keys, so
    # Dagster launches each run once. Later ticks get new keys (decision 0100).
    tenant = new_tenant()
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "unchanged"})
    first, order = _evaluate_sensor(instance, resources)
    again, order = _evaluate_sensor(instance, resources)
    assert (
        _covered(first, order)[tenant.partition_key] == _covered(again, order)[tenant.partition_key]
    )


def test_grouping_keeps_runs_to_consecutive_partitions_within_budget():
    order = [f"k{i}" for i in range(10)]
    work = [TenantWork(f"k{i}", 3, "f") for i in (0, 1, 2, 4, 5, 9)]
    groups = group_into_runs(order, work, max_rows=6, max_tenants=10)
    assert [[w.partition_key for w in g] for g in groups] == [
        ["k0", "k1"],
        ["k2"],
        ["k4", "k5"],
        ["k9"],
    ]


def test_partitioned_materialization_embeds_the_tenants_rows(
    store, new_tenant, instance, resources
):
    tenant = new_tenant()
    ids = [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": f"dagster row {i}"})
        for i in range(3)
    ]
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.partition_key])

    result = materialize(
        [tenant_memory_vectors],
        partition_key=tenant.partition_key,
        instance=instance,
        resources=resources,
    )

    assert result.success
    assert {store.get_memory_log(i)["status"] for i in ids} == {"embedded"}
    (mat,) = result.asset_materializations_for_node("tenant_memory_vectors")
    assert mat.partition == tenant.partition_key
    assert mat.metadata["run_embedded"].value == 3
    assert mat.metadata["total_embedded"].value == 3
    assert mat.metadata["user_id"].value == tenant.user_id
    assert store.vector_store.vector_ids(tenant) == {str(i) for i in ids}


def test_a_ranged_run_materializes_each_tenant_partition(store, new_tenant, instance, resources):
    tenants = [new_tenant() for _ in range(3)]
    ids = {
        t.partition_key: store.create_memory_log(
            t.user_id, t.project_id, {"content": f"range {t.user_id}"}
        )
        for t in tenants
    }
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [t.partition_key for t in tenants])

    result = materialize(
        [tenant_memory_vectors, *tenant_checks],
        instance=instance,
        resources=resources,
        tags={
            PARTITION_RANGE_START_TAG: tenants[0].partition_key,
            PARTITION_RANGE_END_TAG: tenants[-1].partition_key,
        },
    )

    assert result.success
    latest = {
        m.partition: m for m in result.asset_materializations_for_node("tenant_memory_vectors")
    }
    assert set(latest) == set(ids)
    for t in tenants:  # each partition's latest materialization: its own tenant and counts
        metadata = latest[t.partition_key].metadata
        assert metadata["user_id"].value == t.user_id
        assert metadata["run_embedded"].value == 1
        assert metadata["total_embedded"].value == 1
    assert {store.get_memory_log(i)["status"] for i in ids.values()} == {"embedded"}
    assert all(e.passed for e in result.get_asset_check_evaluations())
    # the run told the sensor it claims no more rows once its tenants were processed
    assert instance.get_run_by_id(result.run_id).tags[CLAIMS_DONE_TAG] == "true"


def test_tenants_of_an_active_run_wait_until_it_claims_no_more_rows(
    store, new_tenant, instance, resources
):
    single, ranged, free = (new_tenant() for _ in range(3))
    for t in (single, ranged, free):
        store.create_memory_log(t.user_id, t.project_id, {"content": f"waiting {t.user_id}"})
    _, order = _evaluate_sensor(instance, resources)  # adds the partitions
    runs = [
        record_run(
            instance,
            status=DagsterRunStatus.STARTED,
            tags={SENSOR_TAG: "pending_rows_sensor", PARTITION_TAG: single.partition_key},
        ),
        record_run(
            instance,
            status=DagsterRunStatus.STARTED,
            tags={
                SENSOR_TAG: "pending_rows_sensor",
                PARTITION_RANGE_START_TAG: ranged.partition_key,
                PARTITION_RANGE_END_TAG: ranged.partition_key,
            },
        ),
    ]

    requests, order = _evaluate_sensor(instance, resources)
    covered = _covered(requests, order)
    assert free.partition_key in covered
    assert single.partition_key not in covered and ranged.partition_key not in covered

    for run in runs:
        instance.add_run_tags(run.run_id, {CLAIMS_DONE_TAG: "true"})
    requests, order = _evaluate_sensor(instance, resources)
    assert {t.partition_key for t in (single, ranged, free)} <= set(_covered(requests, order))


def test_the_tenant_directory_lists_user_and_project_of_each_tenant(
    store, new_tenant, instance, resources
):
    from memory_pipeline.defs.assets import memory_tenants

    tenant = new_tenant("directory")
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "listed"})

    result = materialize(
        [memory_tenants], instance=instance, resources={"postgres": resources["postgres"]}
    )

    (mat,) = result.asset_materializations_for_node("memory_tenants")
    rows = [r.data for r in mat.metadata["tenants"].value.records]
    mine = [r for r in rows if r["tenant_key"] == tenant.key]
    assert mine == [
        {
            "partition": tenant.partition_key,
            "user_id": tenant.user_id,
            "project_id": tenant.project_id,
            "tenant_key": tenant.key,
            "pending": 1,
            "embedded": 0,
            "skipped": 0,
            "failed": 0,
            "dead": 0,
        }
    ]


def test_the_drift_check_schedule_checks_every_tenant_in_one_run(store, new_tenant, resources):
    from dagster import DagsterInstance, build_schedule_context

    from memory_pipeline.definitions import defs
    from memory_pipeline.defs.checks import tenant_drift_check_schedule

    tenants = [new_tenant("drift") for _ in range(3)]
    ids = [
        store.create_memory_log(t.user_id, t.project_id, {"content": f"checked {t.user_id}"})
        for t in tenants
    ]
    for t in tenants:
        store.process_pending(t.user_id, t.project_id)
    store.vector_store.delete_vectors(tenants[1], [str(ids[1])])  # drift behind Postgres' back

    with DagsterInstance.local_temp() as instance:  # a schedule's context needs an instance ref
        request = tenant_drift_check_schedule(build_schedule_context(instance=instance))
        assert isinstance(request, RunRequest)
        assert not request.tags and not request.run_config  # no tenants named: every tenant
        job = defs.resolve_job_def("tenant_drift_check")
        # every tenant of this shared test home would be checked; these three are enough here
        result = job.execute_in_process(
            instance=instance,
            resources=resources,
            run_config={"tenants": [t.partition_key for t in tenants]},
        )

    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "postgres_and_chroma_agree"
    assert not evaluation.passed
    assert evaluation.metadata["tenants"].value == 3
    assert evaluation.metadata["missing_in_chroma"].value == 1
    assert evaluation.metadata["tenants_out_of_sync"].value == 1
    per_tenant = [r.data for r in evaluation.metadata["per_tenant"].value.records]
    assert per_tenant[0]["tenant"] == tenants[1].partition_key  # failing tenants first
    assert per_tenant[0]["example_ids"] == str(ids[1])
    assert [r["passed"] for r in per_tenant] == [False, True, True]
