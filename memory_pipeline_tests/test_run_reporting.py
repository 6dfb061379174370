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
