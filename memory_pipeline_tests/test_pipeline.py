"""The store step against the real Postgres, Chroma and model: claim → embed → both stores."""

import threading

import numpy as np
import psycopg
import pytest

from memory_pipeline.processing import process_tenant
from memory_pipeline.storage import claims
from memory_pipeline.tenancy import Tenant


def _work_log(task: str, summary: str, lesson: str) -> dict:
    return {"task": task, "agent": "claude", "summary": summary, "lesson": lesson}


def _pg_vectors(store, tenant: Tenant) -> dict[str, np.ndarray]:
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT vector_id, embedding FROM memory_vector WHERE tenant_key = %s AND embedding_model = %s",
            (tenant.key, store.embedder.model_id),
        ).fetchall()
    return {r["vector_id"]: np.asarray(r["embedding"].to_numpy()) for r in rows}


def _statuses(store, ids):
    return {i: store.get_memory_log(i)["status"] for i in ids}


def test_a_row_goes_from_pending_to_embedded_with_its_vector_in_both_stores(store, new_tenant):
    tenant = new_tenant()
    log_id = store.create_memory_log(
        tenant.user_id,
        tenant.project_id,
        _work_log(
            "pgvector index",
            "Added an HNSW index per model",
            "Partial indexes per model keep dimensions apart",
        ),
    )
    assert store.get_memory_log(log_id)["status"] == "pending"

    counts = store.process_pending(tenant.user_id, tenant.project_id)

    assert counts["embedded"] == 1
    row = store.get_memory_log(log_id)
    assert row["status"] == "embedded"
    assert row["embedding_model"] == store.embedder.model_id
    assert row["search_text"] and "HNSW" in row["search_text"]
    pg = _pg_vectors(store, tenant)
    chroma = store.vector_store.get_vectors(tenant, [str(log_id)])
    assert set(pg) == {str(log_id)} == set(chroma)
    np.testing.assert_allclose(pg[str(log_id)], chroma[str(log_id)], atol=1e-6)
    assert np.isclose(np.linalg.norm(pg[str(log_id)]), 1.0, atol=1e-4)


def test_chroma_metadata_carries_the_tenant_and_memory_fields(store, new_tenant):
    tenant = new_tenant()
    log_id = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "a note about metadata"}
    )
    store.process_pending(tenant.user_id, tenant.project_id)
    collection = store.vector_store.existing_collection(tenant)
    got = collection.get(ids=[str(log_id)], include=["metadatas"])
    meta = got["metadatas"][0]
    assert meta["log_id"] == log_id
    assert (meta["user_id"], meta["project_id"]) == (tenant.user_id, tenant.project_id)
    assert meta["memory_type"] == "note"
    assert meta["embedding_model"] == store.embedder.model_id
    assert isinstance(meta["occurred_at"], int | float)
    assert collection.metadata["user_id"] == tenant.user_id
    assert collection.metadata["project_id"] == tenant.project_id


def test_a_crash_between_chroma_upsert_and_postgres_write_loses_and_duplicates_nothing(
    store, new_tenant
):
    tenant = new_tenant()
    ids = [
        store.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": f"crash test memory {i}"}
        )
        for i in range(5)
    ]

    def crash(_embedded_ids):
        raise RuntimeError("injected crash after the Chroma upsert")

    with pytest.raises(RuntimeError, match="injected crash"):
        process_tenant(
            store.db,
            store.vector_store,
            store.embedder,
            tenant,
            store.process_options(after_vector_upsert=crash),
        )

    assert set(_statuses(store, ids).values()) == {"pending"}
    assert store.vector_store.vector_ids(tenant) == {str(i) for i in ids}  # written, not recorded

    counts = store.process_pending(tenant.user_id, tenant.project_id)

    assert counts["embedded"] == 5
    assert set(_statuses(store, ids).values()) == {"embedded"}
    assert store.vector_store.vector_ids(tenant) == {str(i) for i in ids}
    assert set(_pg_vectors(store, tenant)) == {str(i) for i in ids}
    assert store.vector_store.existing_collection(tenant).count() == 5


def test_two_overlapping_process_calls_on_one_tenant_make_no_duplicates(store, new_tenant):
    tenant = new_tenant()
    ids = [
        store.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": f"overlap memory number {i}"}
        )
        for i in range(120)
    ]
    results: list[dict] = []
    errors: list[BaseException] = []
    options = store.process_options(batch_rows=16)

    def worker():
        try:
            results.append(
                process_tenant(
                    store.db, store.vector_store, store.embedder, tenant, options
                ).as_dict()
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert sum(r["embedded"] for r in results) == 120  # each row processed exactly once
    assert set(_statuses(store, ids).values()) == {"embedded"}
    assert store.vector_store.existing_collection(tenant).count() == 120
    with store.db.connection() as conn:
        (dupes,) = (
            conn.execute(
                "SELECT count(*) - count(DISTINCT vector_id) AS d FROM memory_vector WHERE tenant_key = %s",
                (tenant.key,),
            )
            .fetchone()
            .values()
        )
    assert dupes == 0


def test_a_row_committed_after_a_higher_id_is_still_processed(store, new_tenant, database_url):
    tenant = new_tenant()
    # the tenant exists already (a first writer of a new tenant would make the second wait)
    store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "an earlier memory"})
    slow = psycopg.connect(database_url)
    try:
        slow.execute(
            "INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data) VALUES (%s, %s, '', %s)",
            (
                tenant.user_id,
                tenant.project_id,
                psycopg.types.json.Jsonb({"content": "the slow writer"}),
            ),
        )  # holds a lower id, not yet committed
        fast_id = store.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": "the fast writer"}
        )
        store.process_pending(tenant.user_id, tenant.project_id)
        assert store.get_memory_log(fast_id)["status"] == "embedded"
        slow.commit()
    finally:
        slow.close()
    with store.db.connection() as conn:
        (slow_id,) = (
            conn.execute(
                "SELECT id FROM memory_log WHERE tenant_key = %s AND raw_data->>'content' = 'the slow writer'",
                (tenant.key,),
            )
            .fetchone()
            .values()
        )
    assert slow_id < fast_id
    assert store.get_memory_log(slow_id)["status"] == "pending"
    store.process_pending(tenant.user_id, tenant.project_id)
    assert store.get_memory_log(slow_id)["status"] == "embedded"


def test_a_repeated_external_id_returns_the_existing_row(store, new_tenant):
    tenant = new_tenant()
    first = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "one"}, external_id="ext-1"
    )
    again = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "two"}, external_id="ext-1"
    )
    other = new_tenant()
    elsewhere = store.create_memory_log(
        other.user_id, other.project_id, {"content": "one"}, external_id="ext-1"
    )
    assert first == again
    assert elsewhere != first
    assert store.get_memory_log(first)["raw_data"] == {"content": "one"}


@pytest.mark.parametrize(
    ("user_id", "project_id", "raw_data", "message"),
    [
        ("", "p", {"a": 1}, "user_id must not be empty"),
        ("u" * 256, "p", {"a": 1}, "limit is 255"),
        ("u", "", {"a": 1}, "project_id must not be empty"),
        ("u", "p", [1, 2], "must be a JSON object"),
        ("u", "p", "not json", "not valid JSON"),
        ("u", "p", {"a": "nul\x00byte"}, "u0000"),
        ("u", "p", {"a": "x" * (1024 * 1024)}, "limit is"),
    ],
)
def test_bad_input_raises_a_one_line_value_error_and_writes_nothing(
    store, user_id, project_id, raw_data, message
):
    with store.db.connection() as conn:
        (before,) = conn.execute("SELECT count(*) AS n FROM memory_log").fetchone().values()
    with pytest.raises(ValueError, match=message) as info:
        store.create_memory_log(user_id, project_id, raw_data)
    assert "\n" not in str(info.value)
    with store.db.connection() as conn:
        (after,) = conn.execute("SELECT count(*) AS n FROM memory_log").fetchone().values()
    assert after == before


def test_unknown_tenant_search_returns_an_empty_list(store, new_tenant):
    tenant = new_tenant("nobody")
    assert store.search_similar_memories("anything at all", tenant.user_id, tenant.project_id) == []


def test_search_puts_the_right_memory_first(store, new_tenant):
    tenant = new_tenant()
    texts = {
        "db": _work_log(
            "Postgres pool",
            "Connection pool exhausted under load; raised max_size",
            "Size pools to workers",
        ),
        "ui": _work_log(
            "Dark mode", "Added a dark theme toggle to the settings page", "Use CSS variables"
        ),
        "ml": _work_log(
            "Embedding cache",
            "Cached sentence embeddings by content hash",
            "Hash text plus model id",
        ),
    }
    ids = {
        k: store.create_memory_log(tenant.user_id, tenant.project_id, v) for k, v in texts.items()
    }
    store.process_pending(tenant.user_id, tenant.project_id)
    results = store.search_similar_memories(
        "why did the database connection pool run out?",
        tenant.user_id,
        tenant.project_id,
        mode="vector",
    )
    assert results[0].log_id == ids["db"]
    assert {r.log_id for r in results} <= set(ids.values())


def test_workable_tenants_lists_pending_rows_and_tombstones(store, new_tenant):
    pending_tenant, deleted_tenant = new_tenant(), new_tenant()
    store.create_memory_log(
        pending_tenant.user_id, pending_tenant.project_id, {"content": "waiting"}
    )
    gone = store.create_memory_log(
        deleted_tenant.user_id, deleted_tenant.project_id, {"content": "to delete"}
    )
    store.process_pending(deleted_tenant.user_id, deleted_tenant.project_id)
    store.delete_memory_log(gone)
    with store.db.connection() as conn:
        work = {t.tenant.key: t for t in claims.workable_tenants(conn)}
    assert work[pending_tenant.key].rows == 1
    assert work[deleted_tenant.key].tombstones == 1


def test_a_foreign_vector_planted_in_a_tenants_collection_is_never_returned(store, new_tenant):
    victim, intruder = new_tenant(), new_tenant()
    own = store.create_memory_log(
        victim.user_id, victim.project_id, {"content": "my own memory of the lake"}
    )
    foreign = store.create_memory_log(
        intruder.user_id, intruder.project_id, {"content": "my own memory of the lake"}
    )
    store.process_pending(victim.user_id, victim.project_id)
    query = store.embedder.embed_batch(["memory of the lake"])
    store.vector_store.upsert_vectors(  # a corrupted collection: another tenant's vector inside
        victim,
        store.embedder.model_id,
        [str(foreign)],
        query,
        [{"log_id": foreign, "user_id": intruder.user_id, "project_id": intruder.project_id}],
    )
    (hits,) = store.vector_store.query(victim, store.embedder.model_id, query, 10)
    assert [h.log_id for h in hits] == [own]
    results = store.search_similar_memories("memory of the lake", victim.user_id, victim.project_id)
    assert [r.log_id for r in results] == [own]


def test_many_tenants_processed_together_keep_their_vectors_apart(store, new_tenant):
    from memory_pipeline.processing import process_tenants

    tenants = [new_tenant("many") for _ in range(5)]
    ids = {
        t.key: [
            store.create_memory_log(t.user_id, t.project_id, {"content": f"{t.user_id} memory {i}"})
            for i in range(3)
        ]
        for t in tenants
    }
    gone = ids[tenants[0].key][0]
    store.process_pending(tenants[0].user_id, tenants[0].project_id)
    store.delete_memory_log(gone)
    bad = store.create_memory_log(tenants[1].user_id, tenants[1].project_id, {"nothing": None})

    counts = process_tenants(
        store.db, store.vector_store, store.embedder, tenants, store.process_options(batch_rows=4)
    )

    assert counts[tenants[0].key].deleted == 1
    assert counts[tenants[1].key].skipped == 1 and store.get_memory_log(bad)["status"] == "skipped"
    assert sum(c.embedded for c in counts.values()) == 12
    for t in tenants:
        expected = {str(i) for i in ids[t.key] if i != gone}
        assert store.vector_store.vector_ids(t) == expected
        with store.db.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT tenant_key FROM memory_vector WHERE log_id = ANY(%s)",
                (ids[t.key],),
            ).fetchall()
        assert {r["tenant_key"] for r in rows} == {t.key}


def _interleaved_rows(store, tenants: list[Tenant], per_tenant: int) -> dict[str, list[int]]:
    """Rows written round-robin over the tenants, as many applications writing at once do."""
    ids: dict[str, list[int]] = {t.key: [] for t in tenants}
    for i in range(per_tenant):
        for t in tenants:
            ids[t.key].append(
                store.create_memory_log(t.user_id, t.project_id, {"content": f"{t.user_id} #{i}"})
            )
    return ids


def test_claiming_across_tenants_takes_whole_tenants_in_order_and_every_row_once(store, new_tenant):
    tenants = [new_tenant("claim") for _ in range(4)]
    ids = _interleaved_rows(store, tenants, 3)
    keys = [t.key for t in tenants]
    claimed: list[claims.ClaimedRow] = []
    after = ("", 0)
    with store.db.connection() as conn, conn.transaction():
        while rows := claims.claim_workable_rows_of_tenants(conn, keys, 5, after):
            claimed.extend(rows)
            after = (rows[-1].tenant_key, rows[-1].id)
    assert sorted(r.id for r in claimed) == sorted(i for v in ids.values() for i in v)
    runs = [
        key
        for n, key in enumerate(r.tenant_key for r in claimed)
        if n == 0 or key != claimed[n - 1].tenant_key
    ]
    assert sorted(runs) == sorted(keys)  # each tenant's rows come together, once
    for key in keys:
        assert [r.id for r in claimed if r.tenant_key == key] == ids[key]


def test_interleaved_tenants_cost_one_chroma_upsert_per_tenant_per_batch(store, new_tenant):
    from memory_pipeline.processing import process_tenants

    tenants = [new_tenant("interleaved") for _ in range(4)]
    ids = _interleaved_rows(store, tenants, 3)
    vectors = store.vector_store
    upserts: list[tuple[str, int]] = []
    real_upsert = vectors.upsert_vectors

    def recording_upsert(tenant, model_id, vector_ids, *args, **kwargs):
        upserts.append((tenant.key, len(vector_ids)))
        return real_upsert(tenant, model_id, vector_ids, *args, **kwargs)

    vectors.upsert_vectors = recording_upsert
    try:
        counts = process_tenants(
            store.db, vectors, store.embedder, tenants, store.process_options(batch_rows=3)
        )
    finally:
        del vectors.upsert_vectors

    assert sorted(upserts) == sorted((t.key, 3) for t in tenants)
    assert {key: c.embedded for key, c in counts.items()} == {t.key: 3 for t in tenants}
    for t in tenants:
        assert vectors.vector_ids(t) == {str(i) for i in ids[t.key]}
