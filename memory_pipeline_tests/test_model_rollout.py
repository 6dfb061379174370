"""A model change: a backfill re-embeds every tenant aside; search switches only when complete.

Only one model can be had offline, so the same weights are registered under a second model id.
"""

import pytest
from dagster import DagsterInstance, materialize

from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    TENANT_PARTITIONS_NAME,
)
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource
from memory_pipeline.embedding import Embedder
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.processing import process_tenant
from memory_pipeline.storage import live_models

NEW_MODEL = "test/all-MiniLM-L6-v2-copy"


@pytest.fixture(scope="module")
def new_embedder(embedder) -> Embedder:
    copy = Embedder(NEW_MODEL, batch_size=32, model_source=embedder.model_source)
    copy._model = embedder.model  # same weights, other id: no second load
    return copy


def _live_model(store, tenant):
    with store.db.connection() as conn:
        return live_models.live_model_of(conn, tenant.key)


def _models_in_postgres(store, tenant):
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT embedding_model, count(*) AS n FROM memory_vector WHERE tenant_key = %s GROUP BY 1",
            (tenant.key,),
        ).fetchall()
    return {r["embedding_model"]: r["n"] for r in rows}


def test_a_backfill_after_a_model_change_re_embeds_and_search_switches_only_when_complete(
    store, new_tenant, new_embedder, database_url, endpoints, test_home, monkeypatch
):
    tenants = [new_tenant("rollout") for _ in range(2)]
    ids = {}
    for t in tenants:
        ids[t.key] = [
            store.create_memory_log(
                t.user_id, t.project_id, {"content": f"{t.user_id}: note {i} about sailing"}
            )
            for i in range(6)
        ]
        store.process_pending(t.user_id, t.project_id)
    old_model = store.embedder.model_id
    assert {_live_model(store, t) for t in tenants} == {old_model}

    # The configured model changes; a first run is interrupted half-way through tenant 0.
    new_store = MemoryStore(store.settings, store.endpoints, embedder=new_embedder, migrate=False)
    new_store.ensure_model_index()
    calls = []

    def crash_on_second_batch(embedded_ids):
        calls.append(embedded_ids)
        if len(calls) == 2:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        process_tenant(
            new_store.db,
            new_store.vector_store,
            new_embedder,
            tenants[0],
            new_store.process_options(batch_rows=2, after_vector_upsert=crash_on_second_batch),
        )

    # Half-built: searches still use the old model's complete collection, never a mix.
    assert _live_model(store, tenants[0]) == old_model
    assert _models_in_postgres(store, tenants[0]) == {old_model: 6, NEW_MODEL: 2}
    live = store.vector_store.existing_collection(tenants[0])
    assert live.metadata["embedding_model"] == old_model and live.count() == 6
    for searcher in (store, new_store):  # whichever model a process is configured with
        hits = searcher.search_similar_memories(
            "note 3 about sailing", tenants[0].user_id, tenants[0].project_id, mode="vector"
        )
        assert len(hits) == 6 and hits[0].log_id == ids[tenants[0].key][3]

    # A backfill over both tenant partitions with the new model, through Dagster.
    monkeypatch.setenv("MEMORY_PIPELINE_HOME", str(test_home))
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [t.partition_key for t in tenants])
        result = materialize(
            [tenant_memory_vectors],
            instance=instance,
            resources={
                "postgres": PostgresResource(database_url=database_url),
                "chroma": ChromaResource(host=endpoints.chroma_host, port=endpoints.chroma_port),
                "embedder": EmbedderResource(
                    model_name=NEW_MODEL, model_source=new_embedder.model_source
                ),
            },
            tags={
                PARTITION_RANGE_START_TAG: tenants[0].partition_key,
                PARTITION_RANGE_END_TAG: tenants[1].partition_key,
            },
        )
    assert result.success

    for t in tenants:
        assert _live_model(store, t) == NEW_MODEL
        assert _models_in_postgres(store, t) == {NEW_MODEL: 6}
        live = store.vector_store.existing_collection(t)
        assert live.metadata["embedding_model"] == NEW_MODEL and live.count() == 6
        assert store.vector_store.tenant_collection_names(t) == [t.collection_name]
        assert {store.get_memory_log(i)["embedding_model"] for i in ids[t.key]} == {NEW_MODEL}
        hits = new_store.search_similar_memories(
            "note 4 about sailing", t.user_id, t.project_id, mode="vector"
        )
        assert hits[0].log_id == ids[t.key][4]
        hits = new_store.search_similar_memories(
            "note 4 about sailing", t.user_id, t.project_id, mode="vector", backend="pgvector"
        )
        assert hits[0].log_id == ids[t.key][4]
    new_store.close()
