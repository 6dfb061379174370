"""The drift check counts the second stage's vectors (issue 27): an embedded chunk without its
second-stage vector, a second-stage vector that should not be there and a replaced model's
vectors are reported, and repair (the backfill among it) makes them whole again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from memory_pipeline.consistency import compare_vectors
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.processing import ProcessOptions
from memory_pipeline.processing.second_stage import repair_second_stage
from memory_pipeline.tenancy import Tenant

MPNET = "sentence-transformers/all-mpnet-base-v2"
NOTES = [
    "The nightly import broke because the Chroma batch exceeded its maximum size.",
    "Fixed the flaky deploy by pinning the base image digest.",
    "pgvector HNSW iterative scans keep filtered searches complete.",
]


@pytest.fixture(scope="module")
def staged(store: MemoryStore) -> Iterator[MemoryStore]:
    settings = store.settings.with_overrides(rerank_model=MPNET)
    with MemoryStore(settings, store.endpoints, embedder=store.embedder, migrate=False) as s:
        yield s


def _embedded_tenant(staged: MemoryStore) -> tuple[Tenant, list[int]]:
    tenant = Tenant(f"sdrift-{uuid.uuid4().hex[:8]}", "p")
    ids = [
        staged.create_memory_log(tenant.user_id, tenant.project_id, {"content": text})
        for text in NOTES
    ]
    staged.process_pending(tenant.user_id, tenant.project_id)
    return tenant, ids


def _drift(staged: MemoryStore, tenant: Tenant):
    return compare_vectors(
        staged.db,
        staged.vector_store,
        tenant,
        staged.embedder.model_id,
        second_stage_model=MPNET,
    )


def _sql(staged: MemoryStore, query: str, params: tuple) -> None:
    with staged.db.connection() as conn:
        conn.execute(query, params)


def _repair(staged: MemoryStore, tenant: Tenant):
    options = ProcessOptions.from_settings(staged.settings)
    return repair_second_stage(staged.db, tenant, options, staged.embedder.model_id)


def test_a_lost_second_stage_vector_is_reported_and_repair_restores_it(staged):
    tenant, ids = _embedded_tenant(staged)
    assert _drift(staged, tenant).in_sync
    _sql(
        staged,
        "DELETE FROM memory_vector WHERE log_id = %s AND embedding_model = %s",
        (ids[1], MPNET),
    )

    drift = _drift(staged, tenant)
    assert drift.missing_second_stage == [str(ids[1])]
    assert not drift.in_sync
    # the first stage is untouched: without the second stage the tenant is in sync
    plain = compare_vectors(staged.db, staged.vector_store, tenant, staged.embedder.model_id)
    assert plain.in_sync

    assert _repair(staged, tenant).backfilled == 1
    assert _drift(staged, tenant).in_sync
    with staged.db.connection() as conn:
        row = conn.execute(
            "SELECT vector_dims(embedding) AS dims, chunk_text FROM memory_vector "
            "WHERE log_id = %s AND embedding_model = %s",
            (ids[1], MPNET),
        ).fetchone()
    assert row["dims"] == 768 and "pinning the base image" in row["chunk_text"]


def test_stale_and_replaced_models_second_stage_vectors_are_reported_and_dropped(staged):
    tenant, ids = _embedded_tenant(staged)
    # a chunk past the row's chunk count, and the vectors of a second model since replaced
    _sql(
        staged,
        """INSERT INTO memory_vector (log_id, embedding_model, chunk_index, tenant_key,
                                      chunk_text, embedding)
           SELECT log_id, embedding_model, 1, tenant_key, chunk_text, embedding
           FROM memory_vector WHERE log_id = %s AND embedding_model = %s""",
        (ids[0], MPNET),
    )
    _sql(
        staged,
        """INSERT INTO memory_vector (log_id, embedding_model, chunk_index, tenant_key,
                                      chunk_text, embedding)
           SELECT log_id, 'retired/rerank-model', chunk_index, tenant_key, chunk_text, embedding
           FROM memory_vector
           WHERE log_id = ANY(%s) AND embedding_model = %s AND chunk_index = 0""",
        (ids, MPNET),
    )

    drift = _drift(staged, tenant)
    assert drift.stale_second_stage == [f"{ids[0]}#1"]
    assert drift.other_model_vectors == {"retired/rerank-model": len(ids)}
    assert drift.missing_second_stage == []
    assert not drift.in_sync

    repaired = _repair(staged, tenant)
    assert (repaired.dropped, repaired.backfilled) == (1 + len(ids), 0)
    assert _drift(staged, tenant).in_sync


def test_the_dagster_drift_check_reports_it_and_the_repair_job_fixes_it(
    staged, instance, resources, monkeypatch
):
    from memory_pipeline.definitions import defs
    from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME
    from memory_pipeline.defs.repair import repair_chroma_from_pgvector

    monkeypatch.setenv("MEMORY_PIPELINE_RERANK_MODEL", MPNET)
    tenant, ids = _embedded_tenant(staged)
    _sql(
        staged,
        "DELETE FROM memory_vector WHERE log_id = %s AND embedding_model = %s",
        (ids[2], MPNET),
    )
    check = defs.resolve_job_def("tenant_drift_check")

    def evaluation():
        result = check.execute_in_process(
            instance=instance, resources=resources, run_config={"tenants": [tenant.partition_key]}
        )
        (found,) = result.get_asset_check_evaluations()
        return found

    drifted = evaluation()
    assert not drifted.passed
    assert drifted.metadata["missing_second_stage"].value == 1
    assert drifted.metadata["second_stage_model"].value == MPNET
    per_tenant = [r.data for r in drifted.metadata["per_tenant"].value.records]
    assert per_tenant[0]["example_ids"] == str(ids[2])

    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.partition_key])
    repaired = repair_chroma_from_pgvector.execute_in_process(
        partition_key=tenant.partition_key, instance=instance, resources=resources
    )
    assert repaired.success
    healed = evaluation()
    assert healed.passed and healed.metadata["missing_second_stage"].value == 0


def test_a_row_that_lost_one_chunks_second_stage_vector_is_backfilled(staged):
    tenant = Tenant(f"sdrift-{uuid.uuid4().hex[:8]}", "p")
    long_text = " ".join(f"paragraph {i} about the repair drill schedule" for i in range(60))
    log_id = staged.create_memory_log(tenant.user_id, tenant.project_id, {"content": long_text})
    staged.process_pending(tenant.user_id, tenant.project_id)
    chunks = _drift(staged, tenant).postgres_count
    assert chunks > 1 and _drift(staged, tenant).in_sync
    _sql(
        staged,
        "DELETE FROM memory_vector WHERE log_id = %s AND embedding_model = %s AND chunk_index = 1",
        (log_id, MPNET),
    )
    assert _drift(staged, tenant).missing_second_stage == [f"{log_id}#1"]

    assert _repair(staged, tenant).backfilled == 1
    assert _drift(staged, tenant).in_sync
