"""A home that grows past the shard threshold under Dagster: the sensor shards it, the shard
runs move every tenant's vectors from pgvector (nothing re-embedded, nothing lost), and the old
tenant partitions go (docs/decisions/0203)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetRecordsFilter,
    DagsterInstance,
    SkipReason,
    build_sensor_context,
    materialize,
)

from memory_pipeline.consistency import compare_vectors
from memory_pipeline.defs.assets import tenant_memory_vectors
from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME, sync_tenant_partitions
from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource
from memory_pipeline.defs.sensors import pending_rows_sensor
from memory_pipeline.embedding import Embedder
from memory_pipeline.local_services import ensure_services, stop_services
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.processing import process_tenant
from memory_pipeline.settings import DEFAULT_EMBEDDING_MODEL, Settings
from memory_pipeline.storage import tenant_layout
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.tenancy import Tenant, shard_collection_name, shard_partition_key

#: The home shards once it has more tenants than this, into this many shards.
THRESHOLD, SHARDS = 3, 2


@pytest.fixture(scope="module")
def growing_home(embedder) -> Iterator[MemoryStore]:
    home = Path(tempfile.mkdtemp(prefix="mpg-", dir="/tmp"))
    settings = Settings(
        home=home,
        embedding_model=DEFAULT_EMBEDDING_MODEL,
        shard_after_tenants=THRESHOLD,
        tenant_shards=SHARDS,
    )
    eps = ensure_services(settings)
    apply_migrations(eps.database_url)
    try:
        with MemoryStore(settings, eps, embedder=embedder) as store:
            store.ensure_model_index()
            yield store
    finally:
        stop_services(settings)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def dagster_of(growing_home, monkeypatch):
    """The home's Dagster resources, with its settings in the environment the sensor reads."""
    store = growing_home
    monkeypatch.setenv("MEMORY_PIPELINE_HOME", str(store.settings.home))
    monkeypatch.setenv("MEMORY_PIPELINE_SHARD_AFTER_TENANTS", str(THRESHOLD))
    monkeypatch.setenv("MEMORY_PIPELINE_TENANT_SHARDS", str(SHARDS))
    return {
        "postgres": PostgresResource(database_url=store.endpoints.database_url),
        "chroma": ChromaResource(
            host=store.endpoints.chroma_host, port=store.endpoints.chroma_port
        ),
        "embedder": EmbedderResource(model_name=store.embedder.model_id),
    }


def _tick(instance: DagsterInstance, resources: dict[str, object]):
    context = build_sensor_context(instance=instance, resources=resources, cursor=None)
    return pending_rows_sensor(context)


def _run_requested(instance, resources, result) -> None:
    """Materialize what the tick asked for, partition by partition (a range as its ends)."""
    keys = list(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    for request in result.run_requests:
        if request.partition_key:
            wanted = [request.partition_key]
        else:
            first = keys.index(request.tags["dagster/asset_partition_range_start"])
            last = keys.index(request.tags["dagster/asset_partition_range_end"])
            wanted = keys[first : last + 1]
        for key in wanted:
            done = materialize(
                [tenant_memory_vectors], partition_key=key, instance=instance, resources=resources
            )
            assert done.success


def _snapshot(store: MemoryStore, tenants: list[Tenant]) -> dict[str, object]:
    with store.db.connection() as conn:
        rows = conn.execute(
            """SELECT id, status, embedded_at, content_hash FROM memory_log
               WHERE tenant_key = ANY(%s) ORDER BY id""",
            ([t.key for t in tenants],),
        ).fetchall()
        vectors = conn.execute(
            "SELECT tenant_key, vector_id FROM memory_vector WHERE tenant_key = ANY(%s)",
            ([t.key for t in tenants],),
        ).fetchall()
    return {"rows": rows, "vectors": sorted((v["tenant_key"], v["vector_id"]) for v in vectors)}


def test_a_home_growing_past_the_threshold_moves_to_shards_without_re_embedding(
    growing_home, dagster_of
):
    store, resources = growing_home, dagster_of
    instance = DagsterInstance.ephemeral()
    first = [Tenant(f"grow-{i}", "proj") for i in range(THRESHOLD)]
    for t in first:
        for n in range(2):
            store.create_memory_log(t.user_id, t.project_id, {"content": f"{t.user_id} note {n}"})

    # a small home: one partition per tenant, one collection per tenant
    _run_requested(instance, resources, _tick(instance, resources))
    assert set(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME)) == {
        t.partition_key for t in first
    }
    before = _snapshot(store, first)
    assert {r["status"] for r in before["rows"]} == {"embedded"}
    searches = {
        t.key: [r.log_id for r in store.search_similar_memories("note", t.user_id, t.project_id)]
        for t in first
    }
    names = {c.name for c in store.vector_store.client.list_collections()}
    assert {t.collection_name for t in first} <= names

    # one more tenant: the next tick shards the home and plans shard runs
    newcomer = Tenant("grow-new", "proj")
    new_id = store.create_memory_log(newcomer.user_id, newcomer.project_id, {"content": "hello"})
    result = _tick(instance, resources)
    with store.db.connection() as conn:
        assert tenant_layout.read_layout(conn).shards == SHARDS
    shard_keys = {shard_partition_key(n) for n in range(SHARDS)}
    assert shard_keys <= set(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    requested = {
        key
        for r in result.run_requests
        for key in (
            r.partition_key,
            r.tags.get("dagster/asset_partition_range_start"),
            r.tags.get("dagster/asset_partition_range_end"),
        )
        if key
    }
    assert requested and requested <= shard_keys
    _run_requested(instance, resources, result)

    # every tenant is in its shard; nothing was re-embedded and nothing was lost
    everyone = [*first, newcomer]
    with store.db.connection() as conn:
        placed = tenant_layout.placed(conn, everyone)
    assert all(t.shard is not None for t in placed)
    after = _snapshot(store, first)
    assert after == before  # same rows, same embedded_at, same vector ids
    assert store.get_memory_log(new_id)["status"] == "embedded"
    names = {c.name for c in store.vector_store.client.list_collections()}
    assert not {t.collection_name for t in everyone} & names  # the old collections are gone
    for t in placed:
        assert compare_vectors(store.db, store.vector_store, t, store.embedder.model_id).in_sync
    for t in first:
        found = store.search_similar_memories("note", t.user_id, t.project_id)
        assert [r.log_id for r in found] == searches[t.key]

    # the shard partitions carry the shard's totals; nothing is left to do
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=tenant_memory_vectors.key, asset_partitions=sorted(requested)),
        limit=10,
    ).records
    assert records and {"shard", "shard_tenants", "total_embedded"} <= set(
        records[0].asset_materialization.metadata
    )
    # the tenants with vectors were moved; the newcomer, with none yet, was placed in bulk
    moved = sum(r.asset_materialization.metadata["run_moved"].value for r in records)
    assert moved == len(first)
    assert isinstance(_tick(instance, resources), SkipReason)

    # the old tenant partitions are strays now: they go after the grace period
    with store.db.connection() as conn:
        sync = sync_tenant_partitions(
            instance, conn, tenant_memory_vectors.key, store.embedder.model_id, now=0.0
        )
        assert {t.partition_key for t in first} <= set(sync.strays)
        sync = sync_tenant_partitions(
            instance,
            conn,
            tenant_memory_vectors.key,
            store.embedder.model_id,
            strays_seen=sync.strays,
            now=10_000.0,
        )
    assert set(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME)) == shard_keys


ROLLOUT_MODEL = "test/all-MiniLM-L6-v2-shard-copy"


def test_a_model_rollout_in_a_shard_switches_its_tenants_and_leaves_neighbours_alone(
    growing_home,
):
    store = growing_home
    with store.db.connection() as conn:
        layout = tenant_layout.shard_home(conn, SHARDS)
    old_model = store.embedder.model_id
    rolled, neighbour = Tenant("rollout-a", "proj"), Tenant("rollout-b", "proj")
    ids = {
        t.key: [
            store.create_memory_log(t.user_id, t.project_id, {"content": f"{t.user_id} sail {i}"})
            for i in range(3)
        ]
        for t in (rolled, neighbour)
    }
    store.process_pending()
    copy = Embedder(ROLLOUT_MODEL, batch_size=32, model_source=store.embedder.model_source)
    copy._model = store.embedder.model  # same weights under another id: no second load
    with MemoryStore(store.settings, store.endpoints, embedder=copy, migrate=False) as new_store:
        new_store.ensure_model_index()
        with store.db.connection() as conn:
            (placed,) = tenant_layout.placed(conn, [rolled])
        counts = process_tenant(
            new_store.db, new_store.vector_store, copy, placed, new_store.process_options()
        )
        assert counts.reembedded == 3 and counts.switched == 1
        found = new_store.search_similar_memories("sail 1", rolled.user_id, rolled.project_id)
        assert found[0].log_id == ids[rolled.key][1]
    with store.db.connection() as conn:
        placed, other = tenant_layout.placed(conn, [rolled, neighbour])
        rows = conn.execute(
            "SELECT tenant_key, live_model FROM memory_tenant WHERE tenant_key = ANY(%s)",
            ([rolled.key, neighbour.key],),
        ).fetchall()
    models = {r["tenant_key"]: r["live_model"] for r in rows}
    assert models == {rolled.key: ROLLOUT_MODEL, neighbour.key: old_model}
    vs = store.vector_store
    new_collection = shard_collection_name(placed.shard, ROLLOUT_MODEL)
    old_collection = shard_collection_name(placed.shard, old_model)
    assert vs.vector_ids(placed, collection_name=new_collection) == {
        str(i) for i in ids[rolled.key]
    }
    assert vs.vector_ids(placed, collection_name=old_collection) == set()  # retired
    neighbours_collection = shard_collection_name(other.shard, old_model)
    assert vs.vector_ids(other, collection_name=neighbours_collection) == {
        str(i) for i in ids[neighbour.key]
    }
    assert layout.shard_of(rolled.key) == placed.shard
    found = store.search_similar_memories("sail 2", neighbour.user_id, neighbour.project_id)
    assert found[0].log_id == ids[neighbour.key][2]
