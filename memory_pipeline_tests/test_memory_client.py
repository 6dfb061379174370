"""``MemoryClient`` has ``MemoryStore``'s methods, return types and errors, through the service."""

from __future__ import annotations

import inspect
from datetime import datetime

import pytest

from memory_pipeline import MemoryClient, MemoryStore, SearchResult
from memory_pipeline.memory_store import MemoryWrite
from memory_pipeline.service import keys
from memory_pipeline_tests.service_support import free_port

WAIT = 120


def exercise(memories, user: str, project: str) -> dict:
    """The same calls against a MemoryStore or a MemoryClient; what they returned."""
    out: dict = {}
    first = memories.create_memory_log(
        user,
        project,
        {"content": "The nightly import failed on a CSV with a BOM"},
        external_id="c-1",
    )
    out["repeat"] = memories.create_memory_log(user, project, {"content": "x"}, external_id="c-1")
    second = memories.create_memory_log(
        user,
        project,
        {"speaker": "Ana", "text": "I moved to Lisbon in May"},
        occurred_at=datetime.fromisoformat("2024-05-03T12:00:00+00:00"),
    )
    out["ids"] = (first, second)
    out["writes"] = memories.create_memory_logs(
        [
            {"user_id": user, "project_id": project, "raw_data": {"content": "batched"}},
            {"user_id": user, "project_id": project, "raw_data": 7},
        ]
    )
    out["states"] = memories.wait_until_embedded([first, second, out["writes"][0].id], timeout=WAIT)
    out["got"] = memories.get_memory_log(second)
    out["search"] = memories.search_similar_memories("why did the import fail?", user, project)
    out["explained"] = memories.search_similar_memories(
        "why did the import fail?", user, project, explain=True
    )
    out["many"] = memories.search_many(["import failure", "where does Ana live?"], user, project)
    out["filtered"] = memories.search_similar_memories(
        "Lisbon", user, project, limit=5, mode="keyword", memory_types=["conversation_turn"]
    )
    out["updated"] = memories.update_memory_log(first, {"content": "The import is fixed now"})
    out["deleted"] = memories.delete_memory_log(second)
    out["deleted again"] = memories.delete_memory_log(second)
    out["gone"] = memories.get_memory_log(second)
    for name, call in {
        "bad raw_data": lambda: memories.create_memory_log(user, project, [1]),
        "bad limit": lambda: memories.search_similar_memories("x", user, project, limit=0),
        "update missing": lambda: memories.update_memory_log(second, {"a": 1}),
        "wait missing": lambda: memories.wait_until_embedded([second], timeout=1),
    }.items():
        with pytest.raises(ValueError) as raised:
            call()
        out[name] = str(raised.value)
    out["status"] = memories.status()
    return out


def test_memory_client_answers_like_memory_store(service, store, embedding_worker, new_tenant):
    local, remote = new_tenant("client-local"), new_tenant("client-remote")
    embedding_worker.watch(local, remote)
    key = keys.create_key(store.db, remote).key
    with MemoryClient(service.base_url, key) as client:
        mine = exercise(store, local.user_id, local.project_id)
        theirs = exercise(client, remote.user_id, remote.project_id)

    for said in (mine, theirs):
        first, second = said["ids"]
        assert said["repeat"] == first
        assert said["writes"][0].created and said["writes"][1].error
        assert all(isinstance(w, MemoryWrite) for w in said["writes"])
        assert set(said["states"].values()) == {"embedded"}
        assert said["got"]["id"] == second and said["got"]["raw_data"]["speaker"] == "Ana"
        assert said["search"][0].log_id == first
        assert all(isinstance(r, SearchResult) for r in said["search"])
        assert isinstance(said["search"][0].occurred_at, datetime)
        assert said["search"][0].explanation is None
        assert isinstance(said["explained"][0].explanation, dict)
        assert [rs[0].log_id for rs in said["many"]] == [first, second]
        assert [r.log_id for r in said["filtered"]] == [second]
        assert said["updated"] is None
        assert (said["deleted"], said["deleted again"], said["gone"]) == (True, False, None)
    for name in ("bad raw_data", "bad limit", "update missing"):
        mine_said = mine[name].replace(str(mine["ids"][1]), "<id>")
        assert mine_said == theirs[name].replace(str(theirs["ids"][1]), "<id>"), name
        assert "\n" not in theirs[name]
    assert "not exist" in theirs["wait missing"] and "not exist" in mine["wait missing"]
    assert [t["tenant_key"] for t in theirs["status"]["tenants"]] == [remote.key]
    assert set(theirs["status"]["totals"]) == set(mine["status"]["totals"])


def test_memory_client_with_a_tenant_key_may_leave_out_the_tenant(service, store, new_tenant):
    tenant = new_tenant("client-implied")
    key = keys.create_key(store.db, tenant).key
    with MemoryClient(service.base_url, key) as client:
        memory_id = client.create_memory_log(None, None, {"content": "implied tenant"})
        assert client.get_memory_log(memory_id)["user_id"] == tenant.user_id
        assert client.search_similar_memories("anything") == []


def test_memory_client_raises_permission_and_connection_errors(service, store, new_tenant):
    wrong = MemoryClient(service.base_url, "mpk_0123456789ab_" + "B" * 43)
    with wrong, pytest.raises(PermissionError, match="invalid or revoked"):
        wrong.status()
    key = keys.create_key(store.db, new_tenant("client-403")).key
    client = MemoryClient(service.base_url, key)
    with client, pytest.raises(PermissionError, match="another tenant"):
        client.create_memory_log("someone", "else", {"a": 1})
    nowhere = MemoryClient(f"http://127.0.0.1:{free_port()}", key)
    with nowhere, pytest.raises(ConnectionError, match="cannot reach"):
        nowhere.status()
    assert key not in repr(MemoryClient(service.base_url, key))


STORE_METHODS = [
    "create_memory_log",
    "create_memory_logs",
    "get_memory_log",
    "update_memory_log",
    "delete_memory_log",
    "search_similar_memories",
    "search_many",
    "wait_until_embedded",
    "status",
]


def _shape(method) -> list[tuple[str, object, object]]:
    """(name, kind, default) of a method's parameters, keyword-only ones read as ``**options``."""
    kinds = inspect.Parameter
    params = list(inspect.signature(method).parameters.values())
    shape = [(p.name, p.kind, p.default) for p in params if p.kind is not kinds.KEYWORD_ONLY]
    if params[-1].kind is kinds.KEYWORD_ONLY:
        shape.append(("options", kinds.VAR_KEYWORD, kinds.empty))
    return shape


@pytest.mark.parametrize("name", STORE_METHODS)
def test_memory_client_methods_have_memory_stores_parameters_and_return_type(name):
    store, client = (getattr(cls, name) for cls in (MemoryStore, MemoryClient))
    returns = inspect.signature(client).return_annotation
    assert returns == inspect.signature(store).return_annotation
    assert _shape(client) == [
        # a tenant key implies the tenant: the client may leave it out
        (n, k, None if n in ("user_id", "project_id") and name.startswith("search") else d)
        for n, k, d in _shape(store)
    ]
