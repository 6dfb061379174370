"""A hostile row marks only itself: rows written by SQL that Python cannot decode, that are too
large or empty, or whose tenant's collection refuses writes, end in their own state with a
reason, while their neighbours (of the same or other tenants, in one grouped batch) embed."""

import json
from pathlib import Path

import psycopg
import pytest

from memory_pipeline.processing import process_tenants
from memory_pipeline.tenancy import Tenant

DEEP_LEVELS = 10_000


def _insert_sql(conn: psycopg.Connection, tenant: Tenant, raw_json: str) -> int:
    row = conn.execute(
        "INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data) "
        "VALUES (%s, %s, '', %s::jsonb) RETURNING id",
        (tenant.user_id, tenant.project_id, raw_json),
    ).fetchone()
    return int(row["id"])


def _states(store, ids: list[int]) -> dict[int, tuple[str, int, str | None]]:
    with store.db.connection() as conn:
        rows = conn.execute(  # not raw_data: the deep row would not decode here either
            "SELECT id, status, attempts, last_error FROM memory_log WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return {r["id"]: (r["status"], r["attempts"], r["last_error"]) for r in rows}


def test_hostile_rows_end_in_their_own_state_beside_normal_rows_of_other_tenants(store, new_tenant):
    tenants = [new_tenant("hostile") for _ in range(3)]
    normal: list[int] = []
    with store.db.connection() as conn:
        for t in tenants:
            normal += [
                _insert_sql(conn, t, json.dumps({"content": f"{t.user_id} keeps note {i}"}))
                for i in range(3)
            ]
        deep = _insert_sql(
            conn,
            tenants[1],
            '{"a": ' + "[" * DEEP_LEVELS + "]" * DEEP_LEVELS + "}",
        )
        huge = _insert_sql(conn, tenants[1], json.dumps({"content": "x" * 5_000_000}))
        empty = _insert_sql(conn, tenants[2], "{}")

    counts = process_tenants(
        store.db, store.vector_store, store.embedder, tenants, store.process_options(batch_rows=4)
    )

    states = _states(store, [*normal, deep, huge, empty])
    assert {states[i][0] for i in normal} == {"embedded"}
    status, attempts, reason = states[deep]
    assert status == "skipped" and attempts == 0 and "nested too deeply" in reason
    assert states[huge][0] == "skipped" and "the limit is" in states[huge][2]
    assert states[empty][0] == "skipped" and states[empty][2]
    assert sum(c.embedded for c in counts.values()) == len(normal)
    assert sum(c.skipped for c in counts.values()) == 3


def test_a_non_object_raw_data_is_refused_by_the_database(store, new_tenant):
    tenant = new_tenant()
    with (
        pytest.raises(psycopg.errors.CheckViolation, match="raw_data_is_object"),
        store.db.connection() as conn,
    ):
        _insert_sql(conn, tenant, "[1, 2, 3]")


def test_a_tenant_whose_collection_refuses_writes_fails_only_its_own_rows(store, new_tenant):
    victim, healthy = new_tenant("refused"), new_tenant("healthy")
    # a collection under the victim's name that belongs to someone else: opening it for the
    # victim raises ValueError every time (a deterministic, tenant-level fault)
    store.vector_store.client.create_collection(
        victim.collection_name,
        metadata={"user_id": "someone", "project_id": "else", "embedding_model": "x"},
        embedding_function=None,
    )
    bad = [
        store.create_memory_log(victim.user_id, victim.project_id, {"content": f"refused {i}"})
        for i in range(2)
    ]
    good = [
        store.create_memory_log(healthy.user_id, healthy.project_id, {"content": f"fine {i}"})
        for i in range(2)
    ]
    try:
        counts = process_tenants(
            store.db,
            store.vector_store,
            store.embedder,
            [victim, healthy],
            store.process_options(retry_backoff_seconds=3600),
        )
    finally:
        store.vector_store.client.delete_collection(victim.collection_name)

    states = _states(store, bad + good)
    assert {states[i][0] for i in good} == {"embedded"}
    for i in bad:
        status, attempts, reason = states[i]
        assert status == "failed" and attempts == 1 and "belongs to" in reason
    assert counts[healthy.key].embedded == 2
    assert counts[victim.key].failed == 2


@pytest.mark.parametrize("as_text", [False, True])
def test_a_front_door_refuses_raw_data_too_deep_for_python_with_a_clear_error(
    store, new_tenant, as_text
):
    deep: dict = {}
    for _ in range(DEEP_LEVELS):
        deep = {"a": deep}
    raw = '{"a": ' * DEEP_LEVELS + "{}" + "}" * DEEP_LEVELS if as_text else deep
    tenant = new_tenant()
    with pytest.raises(ValueError, match="nested too deeply") as info:
        store.create_memory_log(tenant.user_id, tenant.project_id, raw)
    assert "\n" not in str(info.value)


def test_an_import_rejects_a_record_too_deep_for_python_and_loads_the_rest(
    store, new_tenant, tmp_path
):
    from memory_pipeline.imports import import_files

    tenant = new_tenant()
    normal = json.dumps(
        {"user_id": tenant.user_id, "project_id": tenant.project_id, "raw_data": {"content": "ok"}}
    )
    deep = (
        f'{{"user_id": "{tenant.user_id}", "project_id": "{tenant.project_id}", "raw_data": '
        + '{"a": ' * DEEP_LEVELS
        + "{}"
        + "}" * DEEP_LEVELS
        + "}"
    )
    path = tmp_path / "hostile.jsonl"
    path.write_text(f"{normal}\n{deep}\n{normal.replace('ok', 'also ok')}\n")

    result = import_files(store, [path])

    assert (result["inserted"], result["rejected"]) == (2, 1)
    (reject,) = [json.loads(line) for line in Path(result["reject_file"]).read_text().splitlines()]
    assert reject["line"] == 2 and "nested too deeply" in reject["reason"]
