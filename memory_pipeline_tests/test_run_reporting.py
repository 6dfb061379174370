"""What runs tell an operator: progress per batch, and each tenant's totals after a run."""

from memory_pipeline.processing import (
    ProcessCounts,
    ProcessOptions,
    process_tenant,
    process_tenants,
)


def test_the_store_step_reports_each_committed_batch(store, new_tenant):
    tenant = new_tenant()
    for i in range(5):
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": f"batch note {i}"})
    batches: list[ProcessCounts] = []
    options = ProcessOptions(batch_rows=2, on_batch=batches.append)

    counts = process_tenant(store.db, store.vector_store, store.embedder, tenant, options)

    assert [b.embedded for b in batches] == [2, 2, 1]
    assert counts.embedded == 5


def test_a_grouped_run_reports_each_batch_across_its_tenants(store, new_tenant):
    tenants = [new_tenant(), new_tenant()]
    for t in tenants:
        for i in range(2):
            store.create_memory_log(t.user_id, t.project_id, {"content": f"grouped {i}"})
    store.create_memory_log(tenants[1].user_id, tenants[1].project_id, {})  # nothing to embed
    batches: list[ProcessCounts] = []
    options = ProcessOptions(batch_rows=3, on_batch=batches.append)

    process_tenants(store.db, store.vector_store, store.embedder, tenants, options)

    assert sum(b.embedded for b in batches) == 4
    assert sum(b.skipped for b in batches) == 1
    assert len(batches) == 2


def _materialize(tenant, instance, resources, *assets):
    from dagster import materialize

    from memory_pipeline.defs.assets import tenant_memory_vectors
    from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME

    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.partition_key])
    result = materialize(
        [tenant_memory_vectors, *assets],
        partition_key=tenant.partition_key,
        instance=instance,
        resources=resources,
    )
    assert result.success
    return result


def _metadata(result) -> dict:
    (mat,) = result.asset_materializations_for_node("tenant_memory_vectors")
    return {k: v.value for k, v in mat.metadata.items()}


def test_a_materialization_shows_the_tenants_totals_beside_what_the_run_did(
    store, new_tenant, instance, resources
):
    tenant = new_tenant()
    for i in range(3):
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": f"counted {i}"})
    skipped = store.create_memory_log(tenant.user_id, tenant.project_id, {})

    first = _metadata(_materialize(tenant, instance, resources))
    idle = _materialize(tenant, instance, resources)  # nothing left to do
    again = _metadata(idle)

    assert (first["run_embedded"], first["total_embedded"]) == (3, 3)
    assert (again["run_embedded"], again["total_embedded"]) == (0, 3)
    assert again["total_skipped"] == 1 and again["total_pending"] == 0
    assert again["total_vectors"] == 3
    rows = [r.data for r in again["not_embedded_memories"].records]
    assert rows == [
        {
            "id": skipped,
            "tenant": tenant.partition_key,
            "status": "skipped",
            "attempts": 0,
            "last_error": store.get_memory_log(skipped)["last_error"],
            "updated_at": rows[0]["updated_at"],
        }
    ]
    assert rows[0]["last_error"]  # the reason it was skipped
    messages = [e.message for e in instance.all_logs(idle.run_id) if e.user_message]
    assert any("nothing to embed or delete" in m for m in messages)
    assert not any("loading embedding model" in m for m in messages)  # not loaded for nothing


def test_the_run_log_says_when_the_model_loads_and_how_far_embedding_is(
    store, new_tenant, instance, resources
):
    tenant = new_tenant()
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "logged"})

    result = _materialize(tenant, instance, resources)

    messages = [e.message for e in instance.all_logs(result.run_id) if e.user_message and e.message]
    assert any("loading embedding model" in m for m in messages)
    assert any("ready in" in m for m in messages)
    assert any("embedding: 1/1 rows done" in m and "rows/s" in m for m in messages)
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags["memory_pipeline/user_id"] == tenant.user_id
    assert tags["memory_pipeline/project_id"] == tenant.project_id


def _fail(store, log_id: int, status: str, error: str) -> None:
    with store.db.connection() as conn:
        conn.execute(
            "UPDATE memory_log SET status = %s, attempts = 5, last_error = %s WHERE id = %s",
            (status, error, log_id),
        )


def test_checks_name_the_failing_rows_and_report_each_chosen_tenant(
    store, new_tenant, instance, resources
):
    from memory_pipeline.definitions import defs

    healthy, failing = new_tenant("healthy"), new_tenant("failing")
    store.create_memory_log(healthy.user_id, healthy.project_id, {"content": "fine"})
    store.process_pending(healthy.user_id, healthy.project_id)
    bad = store.create_memory_log(failing.user_id, failing.project_id, {"content": "breaks"})
    _fail(store, bad, "dead", "embedding failed: RuntimeError: the service rejected this text")

    job = defs.resolve_job_def("tenant_checks")
    result = job.execute_in_process(
        instance=instance,
        resources=resources,
        run_config={"tenants": [healthy.partition_key, failing.partition_key]},
    )

    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failures = evaluations["no_failed_or_dead_memories"]
    assert not failures.passed
    assert failures.metadata["tenants"].value == 2 and failures.metadata["dead"].value == 1
    per_tenant = [r.data for r in failures.metadata["per_tenant"].value.records]
    assert [(r["tenant"], r["passed"]) for r in per_tenant] == [
        (failing.partition_key, False),
        (healthy.partition_key, True),
    ]
    (row,) = [r.data for r in failures.metadata["failed_or_dead_rows"].value.records]
    assert (row["id"], row["status"], row["attempts"]) == (bad, "dead", 5)
    assert "service rejected" in row["last_error"]
    assert evaluations["nothing_stuck_pending"].passed
    assert evaluations["postgres_and_chroma_agree"].passed


def test_checks_without_a_partition_or_tenants_cover_every_tenant(
    store, new_tenant, instance, resources
):
    from dagster import AssetSelection, materialize

    from memory_pipeline.defs.assets import tenant_memory_vectors
    from memory_pipeline.defs.checks import (
        no_failed_or_dead_memories,
        nothing_stuck_pending,
        tenant_checks,
    )

    tenant = new_tenant("everyone")
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "counted in all"})
    with store.db.connection() as conn:
        count = conn.execute("SELECT count(*) AS n FROM memory_tenant").fetchone()["n"]

    # what the Checks tab's "Execute all" launches: the checks alone, no partition, no config
    # (the Chroma comparison too; left out here, where every test's tenant would be compared)
    result = materialize(
        [tenant_memory_vectors, *tenant_checks],
        selection=AssetSelection.checks(nothing_stuck_pending, no_failed_or_dead_memories),
        instance=instance,
        resources=resources,
    )

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 2
    assert all(e.metadata["tenants"].value == count for e in evaluations)
