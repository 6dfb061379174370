"""Tenant shards (docs/decisions/0203): the shard rule, a sharded home's collections, and a home
that becomes sharded mid-life without losing or re-embedding anything."""

from __future__ import annotations

import collections
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_pipeline.consistency import (
    compare_tenants,
    compare_vectors,
    rebuild_collection_from_pgvector,
)
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.storage import tenant_layout
from memory_pipeline.storage.tenant_locks import shared_tenant_lock
from memory_pipeline.tenancy import (
    SHARD_COLLECTION_PREFIX,
    Tenant,
    shard_collection_name,
    shard_from_partition_key,
    shard_of,
    shard_partition_key,
    tenant_from_partition_key,
)
from memory_pipeline_tests.conftest import TEST_SHARDS

ids = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@given(user=ids, project=ids, shards=st.integers(min_value=1, max_value=70_000))
@settings(max_examples=200, deadline=None)
def test_a_tenants_shard_is_the_same_in_python_and_in_sql(store, user, project, shards):
    tenant = Tenant(user, project)
    with store.db.connection() as conn:
        in_sql = conn.execute(
            "SELECT memory_pipeline_tenant_shard(%s, %s) AS s", (tenant.key, shards)
        ).fetchone()["s"]
    assert in_sql == shard_of(tenant.key, shards) == shard_of(Tenant(user, project).key, shards)
    assert 0 <= in_sql < shards


def test_tenants_spread_evenly_over_the_shards():
    rng = random.Random(7)
    shards, tenants = 64, 32_000
    counts = collections.Counter(
        shard_of(Tenant(f"user-{rng.getrandbits(64):x}", "p").key, shards) for _ in range(tenants)
    )
    mean = tenants / shards
    assert len(counts) == shards
    assert max(counts.values()) < 1.25 * mean and min(counts.values()) > 0.75 * mean


@given(user=ids, project=ids, shard=st.integers(min_value=0, max_value=99_999))
def test_shard_and_tenant_partition_keys_never_name_each_other(user, project, shard):
    key = shard_partition_key(shard)
    assert shard_from_partition_key(key) == shard
    with pytest.raises(ValueError):
        tenant_from_partition_key(key)
    assert shard_from_partition_key(Tenant(user, project).partition_key) is None


def test_a_shard_number_beyond_the_home_is_refused_clearly():
    with pytest.raises(ValueError, match="at least one shard"):
        shard_of("0123456789abcdef", 0)


def _neighbours(count: int, shards: int = TEST_SHARDS) -> list[Tenant]:
    """``count`` fresh tenants of one shard."""
    by_shard: dict[int, list[Tenant]] = collections.defaultdict(list)
    while True:
        suffix = uuid.uuid4().hex[:10]
        tenant = Tenant(f"shard-user-{suffix}", f"project-{suffix}")
        group = by_shard[shard_of(tenant.key, shards)]
        group.append(tenant)
        if len(group) == count:
            return group


def _placed(store: MemoryStore, tenant: Tenant) -> Tenant:
    with store.db.connection() as conn:
        return tenant_layout.placed(conn, [tenant])[0]


def _add(store: MemoryStore, tenant: Tenant, texts: list[str]) -> list[int]:
    return [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": t}) for t in texts
    ]


def _collection_names(store: MemoryStore) -> set[str]:
    return {c.name for c in store.vector_store.client.list_collections()}


def test_tenants_of_a_shard_share_its_collection_but_never_each_others_results(sharded_home):
    store = sharded_home
    a, b = _neighbours(2)
    text = "the deploy key of the staging cluster lives in the vault"
    ids_a, ids_b = _add(store, a, [text, "lunch was soup"]), _add(store, b, [text, "tea at four"])
    counts = store.process_pending()
    assert counts["embedded"] >= 4 and counts["failed"] == 0
    placed_a, placed_b = _placed(store, a), _placed(store, b)
    assert placed_a.shard == placed_b.shard == shard_of(a.key, TEST_SHARDS)
    names = _collection_names(store)
    assert shard_collection_name(placed_a.shard, store.embedder.model_id) in names
    assert a.collection_name not in names and b.collection_name not in names
    for mode in ("vector", "hybrid", "keyword"):
        for backend in ("chroma", "pgvector"):
            found = store.search_similar_memories(
                text, a.user_id, a.project_id, mode=mode, backend=backend
            )
            assert found and {r.log_id for r in found} <= set(ids_a)
            assert not {r.log_id for r in found} & set(ids_b)
    where = {"memory_type": "note"}
    found = store.search_similar_memories(text, b.user_id, b.project_id, where_filter=where)
    assert found and {r.log_id for r in found} <= set(ids_b)


def test_purging_a_tenant_leaves_its_shard_neighbours_intact(sharded_home):
    store = sharded_home
    gone, kept = _neighbours(2)
    _add(store, gone, ["rowing on the river", "a note to purge"])
    kept_ids = _add(store, kept, ["rowing on the river at dawn", "the kept note"])
    store.process_pending()
    placed_kept = _placed(store, kept)
    before = store.vector_store.vector_ids(
        placed_kept,
        collection_name=store.vector_store.live_collection_name(
            placed_kept, store.embedder.model_id
        ),
    )
    result = store.purge_tenant(gone.user_id, gone.project_id)
    assert result["rows_deleted"] == 2
    shard_collection = shard_collection_name(placed_kept.shard, store.embedder.model_id)
    assert shard_collection in _collection_names(store)  # the shared collection stays
    live = store.vector_store.live_collection_name(placed_kept, store.embedder.model_id)
    assert store.vector_store.vector_ids(placed_kept, collection_name=live) == before
    assert (
        store.vector_store.vector_ids(gone.placed(placed_kept.shard), collection_name=live) == set()
    )
    found = store.search_similar_memories("rowing on the river", kept.user_id, kept.project_id)
    assert {r.log_id for r in found} == set(kept_ids)
    assert store.search_similar_memories("rowing", gone.user_id, gone.project_id) == []


def test_drift_in_a_shard_is_found_and_repaired_for_that_tenant_only(sharded_home):
    store = sharded_home
    broken, neighbour = _neighbours(2)
    _add(store, broken, [f"broken tenant note {i}" for i in range(4)])
    _add(store, neighbour, [f"neighbour note {i}" for i in range(3)])
    store.process_pending()
    model = store.embedder.model_id
    broken, neighbour = _placed(store, broken), _placed(store, neighbour)
    live = store.vector_store.live_collection_name(broken, model)
    lost = sorted(store.vector_store.vector_ids(broken, collection_name=live))[:2]
    store.vector_store.delete_vectors(broken, lost, collection_name=live)
    drift = compare_vectors(store.db, store.vector_store, broken, model)
    assert not drift.in_sync and drift.missing_in_chroma == lost
    assert compare_vectors(store.db, store.vector_store, neighbour, model).in_sync
    # the check's shard-at-a-time read finds the same
    both = compare_tenants(store.db, store.vector_store, [broken, neighbour], model)
    assert both[broken].missing_in_chroma == lost and not both[broken].extra_in_chroma
    assert both[neighbour].in_sync and both[neighbour].postgres_count == 3
    assert rebuild_collection_from_pgvector(store.db, store.vector_store, broken, model) == 4
    assert compare_vectors(store.db, store.vector_store, broken, model).in_sync
    assert compare_vectors(store.db, store.vector_store, neighbour, model).in_sync


def test_deleting_a_memory_in_a_shard_removes_only_its_vectors(sharded_home):
    store = sharded_home
    tenant, neighbour = _neighbours(2)
    doomed, kept = _add(store, tenant, ["a memory to delete", "a memory to keep"])
    other = _add(store, neighbour, ["the neighbour's memory"])
    store.process_pending()
    store.delete_memory_log(doomed)
    assert store.process_pending()["deleted"] == 1
    placed = _placed(store, tenant)
    live = store.vector_store.live_collection_name(placed, store.embedder.model_id)
    assert store.vector_store.vector_ids(placed, collection_name=live) == {str(kept)}
    assert store.vector_store.vector_ids(_placed(store, neighbour), collection_name=live) == {
        str(other[0])
    }


def test_find_tenants_names_each_tenants_shard_partition_and_collection(sharded_home):
    store = sharded_home
    (tenant,) = _neighbours(1)
    _add(store, tenant, ["a note for the lookup"])
    store.process_pending()
    (found,) = store.find_tenants(tenant.user_id)
    shard = shard_of(tenant.key, TEST_SHARDS)
    assert found["tenant_key"] == tenant.key
    assert found["partition"] == shard_partition_key(shard) and found["shard"] == shard
    assert found["collection"].startswith(SHARD_COLLECTION_PREFIX)
    assert found["embedded"] == 1
    assert store.find_tenants(project_id=tenant.project_id) == [found]
    with pytest.raises(ValueError, match="user_id, a project_id or both"):
        store.find_tenants()


def test_tenants_without_vectors_are_placed_in_bulk_unless_a_run_holds_them(sharded_home):
    store = sharded_home
    free, held = _neighbours(2)
    for t in (free, held):
        _add(store, t, [f"{t.user_id} arrived before the home was sharded"])
    with store.db.connection() as conn:  # as a home sharded after these tenants arrived
        conn.execute(
            "UPDATE memory_tenant SET shard = NULL WHERE tenant_key = ANY(%s)",
            ([free.key, held.key],),
        )
    with store.db.connection() as run, run.transaction():  # a run writing held's first vectors
        shared_tenant_lock(run, held)
        with store.db.autocommit_connection() as conn:
            layout = tenant_layout.read_layout(conn)
            placed = tenant_layout.place_tenants_without_vectors(conn, layout, [free.key, held.key])
            assert placed == 1
            assert tenant_layout.unplaced_tenants(conn, layout, [free.key, held.key]) == [held.key]
    with store.db.connection() as conn, pytest.raises(ValueError, match="autocommit"):
        tenant_layout.place_tenants_without_vectors(conn, layout, [held.key])
    store.process_pending()
    for t in (free, held):
        placed_tenant = _placed(store, t)
        assert placed_tenant.shard == shard_of(t.key, TEST_SHARDS)
        found = store.search_similar_memories("arrived before", t.user_id, t.project_id)
        assert len(found) == 1
