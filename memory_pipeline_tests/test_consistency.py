"""Asset checks and repair against the real stores (issues 3 and 5)."""

import numpy as np
from dagster import materialize

from memory_pipeline.consistency import compare_vectors
from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.checks import tenant_checks
from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME
from memory_pipeline.defs.repair import repair_chroma_from_pgvector


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _materialize(tenant, instance, resources):
    return materialize(
        [tenant_memory_vectors, *tenant_checks],
        partition_key=tenant.partition_key,
        instance=instance,
        resources=resources,
    )


def test_checks_pass_for_a_healthy_tenant_and_catch_drift(store, new_tenant, instance, resources):
    tenant = new_tenant()
    ids = [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": f"check me {i}"})
        for i in range(4)
    ]
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.partition_key])

    healthy = _materialize(tenant, instance, resources)
    assert _checks(healthy) == {
        "nothing_stuck_pending": True,
        "no_failed_or_dead_memories": True,
        "postgres_and_chroma_agree": True,
    }

    store.vector_store.delete_vectors(tenant, [str(ids[0])])  # drift: Chroma lost a vector
    drifted = _materialize(tenant, instance, resources)
    assert _checks(drifted)["postgres_and_chroma_agree"] is False


def test_drift_detection_compares_sampled_vector_values(store, new_tenant):
    tenant = new_tenant()
    log_id = store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "value drift"})
    store.process_pending(tenant.user_id, tenant.project_id)
    model = store.embedder.model_id
    assert compare_vectors(store.db, store.vector_store, tenant, model).in_sync

    wrong = np.roll(store.vector_store.get_vectors(tenant, [str(log_id)])[str(log_id)], 1)[None, :]
    store.vector_store.upsert_vectors(
        tenant,
        model,
        [str(log_id)],
        wrong.astype(np.float32),
        [{"log_id": log_id, "user_id": tenant.user_id, "project_id": tenant.project_id}],
    )
    drift = compare_vectors(store.db, store.vector_store, tenant, model)
    assert drift.mismatched_vectors == [str(log_id)]
    assert not drift.in_sync


def test_repair_restores_a_deleted_collection_to_the_same_ids_and_vectors(
    store, new_tenant, instance, resources
):
    tenant = new_tenant()
    long_text = " ".join(f"paragraph {i} about repair drills" for i in range(300))
    for text in ["repair one", "repair two", long_text]:
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": text})
    store.process_pending(tenant.user_id, tenant.project_id)
    ids_before = store.vector_store.vector_ids(tenant)
    vectors_before = store.vector_store.get_vectors(tenant, sorted(ids_before))
    assert any("#" in i for i in ids_before)

    store.vector_store.drop_collection(tenant)
    assert store.vector_store.vector_ids(tenant) == set()
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.partition_key])

    result = repair_chroma_from_pgvector.execute_in_process(
        partition_key=tenant.partition_key, instance=instance, resources=resources
    )

    assert result.success
    assert store.vector_store.vector_ids(tenant) == ids_before
    after = store.vector_store.get_vectors(tenant, sorted(ids_before))
    for vid, vec in vectors_before.items():
        np.testing.assert_allclose(after[vid], vec, atol=1e-6)
    hits = store.search_similar_memories(
        "repair two", tenant.user_id, tenant.project_id, mode="vector"
    )
    assert hits and hits[0].text == "repair two"


def test_search_finds_a_collection_that_another_process_rebuilt(store, new_tenant):
    from memory_pipeline.consistency.repair import rebuild_collection_from_pgvector
    from memory_pipeline.vector_store import ChromaVectorStore, connect_chroma

    tenant = new_tenant()
    for text in ["the tide tables for March", "a recipe for fish soup"]:
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": text})
    store.process_pending(tenant.user_id, tenant.project_id)
    search = store.search
    first = search.search_similar_memories("tide", tenant.user_id, tenant.project_id, mode="vector")
    assert first[0].text == "the tide tables for March"  # the collection is now cached

    ep = store.endpoints  # another process: its own client and cache
    elsewhere = ChromaVectorStore(connect_chroma(ep.chroma_host, ep.chroma_port, ep.chroma_token))
    rebuilt = rebuild_collection_from_pgvector(store.db, elsewhere, tenant, store.embedder.model_id)

    assert rebuilt == 2
    again = search.search_similar_memories("tide", tenant.user_id, tenant.project_id, mode="vector")
    assert [r.log_id for r in again] == [r.log_id for r in first]
