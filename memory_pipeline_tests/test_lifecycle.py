"""Row lifecycle against the real stores: failures, retries, updates, deletes, purge, long texts."""

import dataclasses
import json
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_pipeline.embedding import Embedder
from memory_pipeline.local_services.local_chroma import start_local_chroma, stop_local_chroma
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import VectorStoreUnavailable

POISON = "POISON-PILL"


class PoisonedEmbedder(Embedder):
    """The real model, except that texts containing POISON fail (fault injection)."""

    def __init__(self, real: Embedder) -> None:
        super().__init__(real.model_id, batch_size=real.batch_size, model_source=real.model_source)
        self._model = real.model

    def embed_batch(self, texts):
        if any(POISON in t for t in texts):
            raise RuntimeError("the embedding service rejected this text")
        return super().embed_batch(texts)


def _vector(store, log_id: int) -> np.ndarray:
    return store.vector_store.get_vectors(_tenant_of(store, log_id), [str(log_id)])[str(log_id)]


def _tenant_of(store, log_id):
    row = store.get_memory_log(log_id)
    return Tenant(row["user_id"], row["project_id"])


def test_a_failing_row_is_retried_then_dead_then_embedded_after_a_fix_and_retry(store, new_tenant):
    tenant = new_tenant()
    good = [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": f"good memory {i}"})
        for i in range(3)
    ]
    bad = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": f"bad memory {POISON}"}
    )
    poisoned = MemoryStore(
        store.settings, store.endpoints, embedder=PoisonedEmbedder(store.embedder), migrate=False
    )
    try:
        first = poisoned.process_pending(tenant.user_id, tenant.project_id)
        assert first["embedded"] == 3 and first["failed"] == 1
        assert {store.get_memory_log(i)["status"] for i in good} == {"embedded"}
        row = store.get_memory_log(bad)
        assert row["status"] == "failed" and row["attempts"] == 1
        assert "embedding service rejected" in row["last_error"]

        for _ in range(store.settings.max_attempts - 1):  # backoff is 0 in tests
            poisoned.process_pending(tenant.user_id, tenant.project_id)
        row = store.get_memory_log(bad)
        assert row["status"] == "dead" and row["attempts"] == store.settings.max_attempts
        status = {t["tenant_key"]: t for t in store.status()["tenants"]}[tenant.key]
        assert (status["dead"], status["embedded"]) == (1, 3)
        assert (
            poisoned.process_pending(tenant.user_id, tenant.project_id)["dead"] == 0
        )  # dead stays put
    finally:
        poisoned.close()

    assert store.retry(tenant.user_id, tenant.project_id) == 1
    assert store.get_memory_log(bad)["status"] == "pending"
    assert store.process_pending(tenant.user_id, tenant.project_id)["embedded"] == 1
    assert store.get_memory_log(bad)["status"] == "embedded"


def test_failed_rows_wait_for_their_backoff(store, new_tenant):
    tenant = new_tenant()
    bad = store.create_memory_log(tenant.user_id, tenant.project_id, {"content": POISON})
    slow_retry = store.settings.with_overrides(retry_backoff_seconds=3600.0)
    poisoned = MemoryStore(
        slow_retry, store.endpoints, embedder=PoisonedEmbedder(store.embedder), migrate=False
    )
    try:
        assert poisoned.process_pending(tenant.user_id, tenant.project_id)["failed"] == 1
        assert (
            poisoned.process_pending(tenant.user_id, tenant.project_id)["failed"] == 0
        )  # not due yet
    finally:
        poisoned.close()
    row = store.get_memory_log(bad)
    assert row["attempts"] == 1 and row["next_attempt_at"] > row["updated_at"]


def test_an_update_with_changed_text_re_embeds_and_replaces_the_vectors(store, new_tenant):
    tenant = new_tenant()
    long_text = " ".join(f"filler{i} sentence about nothing" for i in range(400))
    log_id = store.create_memory_log(tenant.user_id, tenant.project_id, {"content": long_text})
    store.process_pending(tenant.user_id, tenant.project_id)
    before = store.get_memory_log(log_id)
    assert before["chunk_count"] > 1
    old_vector = _vector(store, log_id)

    store.update_memory_log(log_id, {"content": "a short new text about kayaking"})
    assert store.get_memory_log(log_id)["status"] == "pending"  # the trigger
    counts = store.process_pending(tenant.user_id, tenant.project_id)

    after = store.get_memory_log(log_id)
    assert counts["embedded"] == 1 and counts["unchanged"] == 0
    assert after["status"] == "embedded" and after["chunk_count"] == 1
    assert after["content_hash"] != before["content_hash"]
    assert store.vector_store.vector_ids(tenant) == {str(log_id)}  # old chunk vectors gone
    assert not np.allclose(_vector(store, log_id), old_vector)
    with store.db.connection() as conn:
        n = conn.execute(
            "SELECT count(*) AS n FROM memory_vector WHERE log_id = %s", (log_id,)
        ).fetchone()["n"]
    assert n == 1


def test_an_update_of_an_unrelated_key_does_not_re_embed(store, new_tenant):
    tenant = new_tenant()
    log_id = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "stable text", "request_id": "r-1"}
    )
    store.process_pending(tenant.user_id, tenant.project_id)
    before = store.get_memory_log(log_id)

    store.update_memory_log(log_id, {"content": "stable text", "request_id": "r-2"})
    counts = store.process_pending(tenant.user_id, tenant.project_id)

    after = store.get_memory_log(log_id)
    assert counts["unchanged"] == 1
    assert after["status"] == "embedded"
    assert after["embedded_at"] == before["embedded_at"]
    assert after["content_hash"] == before["content_hash"]
    assert after["raw_data"]["request_id"] == "r-2"


def test_an_update_from_sql_outside_the_api_also_puts_the_row_back_to_pending(store, new_tenant):
    tenant = new_tenant()
    log_id = store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "v1"})
    store.process_pending(tenant.user_id, tenant.project_id)
    with store.db.connection() as conn:
        conn.execute(
            """UPDATE memory_log SET raw_data = '{"content": "v2"}' WHERE id = %s""", (log_id,)
        )
    assert store.get_memory_log(log_id)["status"] == "pending"


def _store_on(chroma, settings, endpoints, embedder) -> MemoryStore:
    """A store on the test database and the private Chroma server ``chroma``."""
    eps = dataclasses.replace(endpoints, chroma_host=chroma.host, chroma_port=chroma.port)
    return MemoryStore(settings, eps, embedder=embedder, migrate=False)


def test_a_delete_while_chroma_is_unreachable_is_applied_after_recovery(
    settings, endpoints, embedder, new_tenant, tmp_path
):
    chroma_dir = tmp_path / "chroma"
    info = start_local_chroma(chroma_dir)
    tenant = new_tenant()
    try:
        with _store_on(info, settings, endpoints, embedder) as s:
            keep = s.create_memory_log(tenant.user_id, tenant.project_id, {"content": "keep me"})
            gone = s.create_memory_log(tenant.user_id, tenant.project_id, {"content": "delete me"})
            s.process_pending(tenant.user_id, tenant.project_id)
            assert s.vector_store.vector_ids(tenant) == {str(keep), str(gone)}

            stop_local_chroma(chroma_dir)
            assert s.delete_memory_log(gone)  # Postgres alone: works with Chroma down
            assert s.get_memory_log(gone) is None
            with pytest.raises(VectorStoreUnavailable):
                s.process_pending(tenant.user_id, tenant.project_id)
            with s.db.connection() as conn:
                assert conn.execute(
                    "SELECT 1 FROM memory_tombstone WHERE log_id = %s", (gone,)
                ).fetchone()

        info = start_local_chroma(chroma_dir)  # recovery (same data, new port)
        with _store_on(info, settings, endpoints, embedder) as s:
            assert s.process_pending(tenant.user_id, tenant.project_id)["deleted"] == 1
            assert s.vector_store.vector_ids(tenant) == {str(keep)}
            with s.db.connection() as conn:
                assert not conn.execute(
                    "SELECT 1 FROM memory_tombstone WHERE log_id = %s", (gone,)
                ).fetchone()
    finally:
        stop_local_chroma(chroma_dir)


def _tenant_snapshot(store, tenant):
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT id, status, content_hash, raw_data FROM memory_log WHERE tenant_key = %s ORDER BY id",
            (tenant.key,),
        ).fetchall()
        vectors = conn.execute(
            "SELECT vector_id, embedding::text AS e FROM memory_vector WHERE tenant_key = %s ORDER BY vector_id",
            (tenant.key,),
        ).fetchall()
    return json.dumps([rows, vectors], default=str), sorted(store.vector_store.vector_ids(tenant))


def test_purge_removes_one_tenant_everywhere_and_leaves_the_others_untouched(store):
    purged, neighbour, lookalike = (
        _make("purge:me", "proj"),
        _make("purge", "me:proj"),
        _make("purge:me", "proj2"),
    )
    for t in (purged, neighbour, lookalike):
        for i in range(3):
            store.create_memory_log(
                t.user_id, t.project_id, {"content": f"{t.user_id} {t.project_id} {i}"}
            )
        store.process_pending(t.user_id, t.project_id)
    before = {t: _tenant_snapshot(store, t) for t in (neighbour, lookalike)}

    result = store.purge_tenant(purged.user_id, purged.project_id)

    assert result["rows_deleted"] == 3
    assert purged.collection_name in result["collections_dropped"]
    assert store.vector_store.existing_collection(purged) is None
    with store.db.connection() as conn:
        for table in ("memory_log", "memory_vector", "memory_tombstone", "memory_tenant"):
            n = conn.execute(
                f"SELECT count(*) AS n FROM {table} WHERE tenant_key = %s", (purged.key,)
            ).fetchone()["n"]
            assert n == 0, table
    for t in (neighbour, lookalike):
        assert _tenant_snapshot(store, t) == before[t]
    assert store.search_similar_memories("purge me", purged.user_id, purged.project_id) == []


def _make(user, project):
    suffix = uuid.uuid4().hex[:6]
    return Tenant(f"{user}-{suffix}", project)


def test_a_long_memory_whose_answer_is_only_in_its_tail_is_found(store, new_tenant):
    tenant = new_tenant()
    filler = " ".join(
        f"Step {i}: reviewed the logging configuration and adjusted formatter number {i}."
        for i in range(300)
    )
    long_log = {
        "task": "logging cleanup",
        "summary": "Cleaned up logging configuration across services.",
        "solution": {
            "approach": filler
            + " Finally, the root password of the staging database was rotated to a vault-managed secret named orange-falcon."
        },
    }
    long_id = store.create_memory_log(tenant.user_id, tenant.project_id, long_log)
    for text in [
        "Deployed the new billing page",
        "Fixed a typo in the README",
        "Upgraded numpy to 2.x",
    ]:
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": text})
    store.process_pending(tenant.user_id, tenant.project_id)

    row = store.get_memory_log(long_id)
    assert row["chunk_count"] > 3
    assert f"{long_id}#{row['chunk_count'] - 1}" in store.vector_store.vector_ids(tenant)
    results = store.search_similar_memories(
        "what is the staging database password secret called?",
        tenant.user_id,
        tenant.project_id,
        mode="vector",
    )
    assert results[0].log_id == long_id
    assert len({r.log_id for r in results}) == len(results)  # one result per memory


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    documents=st.lists(
        st.dictionaries(st.text(max_size=10), json_value, max_size=6), min_size=1, max_size=6
    )
)
def test_every_generated_row_ends_in_a_terminal_state_and_is_accounted_for(store, documents):
    tenant = Tenant(f"prop-{uuid.uuid4().hex[:8]}", "hypothesis")
    ids, rejected = [], 0
    for doc in documents:
        try:
            ids.append(store.create_memory_log(tenant.user_id, tenant.project_id, doc))
        except ValueError:
            rejected += 1  # e.g. \u0000 or lone surrogates: refused at the door, nothing written
    counts = store.process_pending(tenant.user_id, tenant.project_id)
    states = [store.get_memory_log(i)["status"] for i in ids]
    assert set(states) <= {"embedded", "skipped"}
    assert counts["embedded"] + counts["skipped"] == len(ids)
    assert len(ids) + rejected == len(documents)
    for i in ids:
        row = store.get_memory_log(i)
        if row["status"] == "skipped":
            assert row["last_error"]


def _row_states(store, ids):
    """(status, attempts, last_error) of each row, as ``get_memory_log`` reports them."""
    fields = ("status", "attempts", "last_error")
    return {i: tuple(store.get_memory_log(i)[f] for f in fields) for i in ids}


def test_chroma_down_fails_the_run_clearly_and_leaves_the_rows_pending_for_the_next(
    settings,
    endpoints,
    embedder,
    database_url,
    new_tenant,
    tmp_path,
    monkeypatch,
    test_home,
    instance,
):
    from dagster import build_asset_context

    from memory_pipeline.defs.assets import tenant_memory_vectors
    from memory_pipeline.defs.partitions import TENANT_PARTITIONS_NAME
    from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource

    chroma_dir = tmp_path / "chroma"
    info = start_local_chroma(chroma_dir)
    tenant = new_tenant()
    try:
        with _store_on(info, settings, endpoints, embedder) as s:
            ids = [
                s.create_memory_log(tenant.user_id, tenant.project_id, {"content": f"note {i}"})
                for i in range(4)
            ]
            stop_local_chroma(chroma_dir)

            with pytest.raises(VectorStoreUnavailable, match="Chroma"):
                s.process_pending(tenant.user_id, tenant.project_id)
            # a store failure is not the rows' fault: no attempt spent, no error recorded
            assert set(_row_states(s, ids).values()) == {("pending", 0, None)}

            # the Dagster asset (invoked directly: its retry policy waits 10 + 30 + 70 s) fails
            # with the same clear error, and leaves the rows as they were
            monkeypatch.setenv("MEMORY_PIPELINE_HOME", str(test_home))
            instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant.partition_key])
            with pytest.raises(VectorStoreUnavailable, match=f"Chroma server at .*:{info.port}"):
                list(  # the asset yields its events
                    tenant_memory_vectors(
                        build_asset_context(partition_key=tenant.partition_key, instance=instance),
                        postgres=PostgresResource(database_url=database_url),
                        chroma=ChromaResource(host=info.host, port=info.port),
                        embedder=EmbedderResource(model_name=embedder.model_id),
                    )
                )
            assert set(_row_states(s, ids).values()) == {("pending", 0, None)}

        info = start_local_chroma(chroma_dir)  # recovery: the next run finishes the work
        with _store_on(info, settings, endpoints, embedder) as s:
            assert s.process_pending(tenant.user_id, tenant.project_id)["embedded"] == 4
            assert {state for state, *_ in _row_states(s, ids).values()} == {"embedded"}
            assert s.vector_store.vector_ids(tenant) == {str(i) for i in ids}
    finally:
        stop_local_chroma(chroma_dir)
