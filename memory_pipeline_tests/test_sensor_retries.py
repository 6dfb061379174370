"""No run key is final while its work is not done: the sensor requests work that a finished run
left pending again (failed, canceled, crashed, or claimed nothing), with backoff."""

import json

import pytest
from dagster import MAX_RUNTIME_SECONDS_TAG, DagsterRunStatus, SensorResult, build_sensor_context

from memory_pipeline.defs.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    TENANT_PARTITIONS_NAME,
)
from memory_pipeline.defs.sensors import (
    ATTEMPT_TAG,
    MAX_RETRY_DELAY_SECONDS,
    SENSOR_TAG,
    WORK_TAG,
    Attempts,
    SensorCursor,
    TenantWork,
    pending_rows_sensor,
    plan_runs,
    retry_delay,
    work_digest,
)
from memory_pipeline.tenancy import tenant_partition_key
from memory_pipeline_tests.dagster_runs import record_run

ORDER = [f"k{i}" for i in range(6)]


def _tenants_of(request, order: list[str]) -> list[str]:
    if request.partition_key:
        return [request.partition_key]
    start = order.index(request.tags[PARTITION_RANGE_START_TAG])
    return order[start : order.index(request.tags[PARTITION_RANGE_END_TAG]) + 1]


def _work(*keys: str) -> list[TenantWork]:
    return [TenantWork(k, 2, f"fp-{k}") for k in keys]


def test_new_work_is_planned_once_per_group_as_attempt_zero():
    planned, waiting = plan_runs(ORDER, _work("k0", "k1", "k3"), {}, now=0, base_delay_seconds=10)
    assert [[w.partition_key for w in p.tenants] for p in planned] == [["k0", "k1"], ["k3"]]
    assert [p.attempt for p in planned] == [0, 0] and waiting == 0


def test_work_a_finished_run_left_pending_is_planned_again_after_its_delay():
    work = _work("k3")
    finished = {work_digest(work): Attempts(count=1, last_end=100.0)}

    planned, waiting = plan_runs(ORDER, work, finished, now=105, base_delay_seconds=10)
    assert planned == [] and waiting == 1

    planned, waiting = plan_runs(ORDER, work, finished, now=110, base_delay_seconds=10)
    assert [(p.digest, p.attempt) for p in planned] == [(work_digest(work), 1)]


def test_a_group_that_was_attempted_retries_one_tenant_per_run():
    group = _work("k0", "k1", "k2")
    finished = {work_digest(group): Attempts(1, 0.0)}
    planned, _ = plan_runs(ORDER, group, finished, now=1000, base_delay_seconds=10)
    assert sorted(p.tenants[0].partition_key for p in planned) == ["k0", "k1", "k2"]
    assert all(len(p.tenants) == 1 and p.attempt == 0 for p in planned)


def test_a_tenant_that_keeps_failing_waits_alone_while_its_neighbours_run():
    failing = _work("k1")
    finished = {work_digest(failing): Attempts(3, 100.0)}
    planned, waiting = plan_runs(
        ORDER, _work("k0", "k1", "k2"), finished, now=110, base_delay_seconds=10
    )
    assert waiting == 1  # k1's fourth attempt waits 40 s
    assert [[w.partition_key for w in p.tenants] for p in planned] == [["k0"], ["k2"]]


def test_the_retry_delay_doubles_per_attempt_up_to_a_cap():
    assert [retry_delay(n, 10) for n in range(5)] == [0, 10, 20, 40, 80]
    assert retry_delay(40, 10) == MAX_RETRY_DELAY_SECONDS


@pytest.mark.parametrize(
    "status", [DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED, DagsterRunStatus.SUCCESS]
)
def test_the_sensor_requests_work_a_finished_run_left_pending_under_a_new_run_key(
    store, new_tenant, instance, resources, monkeypatch, status
):
    monkeypatch.setenv("MEMORY_PIPELINE_RUN_RETRY_BACKOFF_SECONDS", "0")
    tenant = new_tenant()
    partition = tenant_partition_key(tenant.user_id, tenant.project_id)
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "still pending"})
    context = build_sensor_context(
        instance=instance,
        resources={"postgres": resources["postgres"], "embedder": resources["embedder"]},
    )

    def request_for_tenant():  # other tests' pending tenants may share its run
        result = pending_rows_sensor(context)
        assert isinstance(result, SensorResult)
        order = list(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
        (mine,) = [r for r in result.run_requests if partition in _tenants_of(r, order)]
        return mine

    first = request_for_tenant()
    assert instance.has_dynamic_partition(TENANT_PARTITIONS_NAME, partition)
    assert first.tags[ATTEMPT_TAG] == "0"
    # the run was launched and ended without doing the work (killed, canceled, or it found
    # the rows locked by another worker): the pending set, and so the digest, is unchanged
    record_run(
        instance,
        status=status,
        tags={k: v for k, v in first.tags.items() if k in (SENSOR_TAG, WORK_TAG, ATTEMPT_TAG)},
    )

    again = request_for_tenant()

    assert again.run_key != first.run_key
    if first.partition_key:  # the same work, its next attempt
        assert again.tags[WORK_TAG] == first.tags[WORK_TAG]
        assert again.tags[ATTEMPT_TAG] == "1"
    else:  # other tests' pending tenants shared its run: now each tenant retries alone
        assert again.partition_key == partition


def test_a_run_key_is_never_reused_even_after_its_attempts_are_forgotten(
    store, new_tenant, instance, resources, monkeypatch
):
    # Finished runs count as attempts for ATTEMPT_MEMORY only; work still pending after that
    # (say `up` was stopped for a night after a failed run) is planned as attempt 0 again, and
    # must not get the key Dagster already launched once (it would skip it forever).
    monkeypatch.setenv("MEMORY_PIPELINE_RUN_RETRY_BACKOFF_SECONDS", "0")
    tenant = new_tenant()
    partition = tenant_partition_key(tenant.user_id, tenant.project_id)
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "pending overnight"})
    sensor_resources = {"postgres": resources["postgres"], "embedder": resources["embedder"]}

    def request_for_tenant(cursor: str | None):
        context = build_sensor_context(instance=instance, resources=sensor_resources, cursor=cursor)
        result = pending_rows_sensor(context)
        assert isinstance(result, SensorResult)
        order = list(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
        (mine,) = [r for r in result.run_requests if partition in _tenants_of(r, order)]
        return mine, context.cursor

    first, cursor = request_for_tenant(None)
    again, _ = request_for_tenant(cursor)  # no finished run of its digest is remembered

    assert again.tags[WORK_TAG] == first.tags[WORK_TAG]
    assert again.tags[ATTEMPT_TAG] == first.tags[ATTEMPT_TAG] == "0"
    assert again.run_key != first.run_key


@pytest.mark.parametrize("limit, tag", [(None, "3600"), ("90", "90"), ("0", None)])
def test_runs_carry_the_max_runtime_dagsters_run_monitoring_enforces(
    store, new_tenant, instance, resources, monkeypatch, limit, tag
):
    # a run hung on a store that stopped answering is ended by the monitoring daemon, and its
    # work is requested again like any failed run's
    if limit is not None:
        monkeypatch.setenv("MEMORY_PIPELINE_RUN_MAX_RUNTIME_SECONDS", limit)
    tenant = new_tenant()
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "bounded"})
    context = build_sensor_context(
        instance=instance,
        resources={"postgres": resources["postgres"], "embedder": resources["embedder"]},
    )
    result = pending_rows_sensor(context)
    assert isinstance(result, SensorResult) and result.run_requests
    assert {r.tags.get(MAX_RUNTIME_SECONDS_TAG) for r in result.run_requests} == {tag}


def test_a_cursor_written_before_generations_still_reads_its_stray_keys():
    cursor = SensorCursor.parse(json.dumps({"alice": 100.0}))
    assert cursor == SensorCursor(strays={"alice": 100.0}, generation=0)
    assert SensorCursor.parse(cursor.dumps()) == cursor
