"""The LangGraph store and the LangChain retriever over a real MemoryStore (issue 26)."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, GetOp, InvalidNamespaceError, PutOp

from memory_pipeline.client import MemoryClient
from memory_pipeline.integrations.langchain import MemoryPipelineRetriever
from memory_pipeline.integrations.langgraph import MemoryPipelineStore
from memory_pipeline.service import keys

WAIT = 120


@pytest.fixture
def lg(store):
    return MemoryPipelineStore(store)


@pytest.fixture
def remote(service, store, new_tenant):
    """(tenant, MemoryClient) with a key of a fresh tenant, on a real ``serve``."""
    tenant = new_tenant("lgr")
    with MemoryClient(service.base_url, keys.create_key(store.db, tenant, "lg").key) as client:
        yield tenant, client


def ns(tenant, *rest):
    return (tenant.user_id, tenant.project_id, *rest)


def test_put_get_update_delete_follow_the_store_contract(lg, new_tenant):
    tenant = new_tenant("lg")
    lg.put(ns(tenant, "prefs"), "tz", {"content": "alice lives in Lisbon", "tz": "WET"})
    first = lg.get(ns(tenant, "prefs"), "tz")
    assert first.value == {"content": "alice lives in Lisbon", "tz": "WET"}
    assert first.namespace == ns(tenant, "prefs") and first.key == "tz"
    assert first.created_at <= first.updated_at
    lg.put(ns(tenant, "prefs"), "tz", {"content": "alice moved to Oslo", "tz": "CET"})
    second = lg.get(ns(tenant, "prefs"), "tz")
    assert second.value["tz"] == "CET"
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert lg.get(ns(tenant, "other"), "tz") is None  # the namespace is part of the key
    lg.put(ns(tenant, "prefs"), "tz", None)  # LangGraph's delete
    assert lg.get(ns(tenant, "prefs"), "tz") is None
    lg.put(ns(tenant, "prefs"), "tz", {"content": "again"})
    lg.delete(ns(tenant, "prefs"), "tz")
    assert lg.get(ns(tenant, "prefs"), "tz") is None
    lg.delete(ns(tenant, "prefs"), "never-there")  # deleting nothing is no error


def test_listing_search_filters_pages_and_namespaces(lg, new_tenant):
    tenant = new_tenant("lg")
    for i in range(5):
        lg.put(ns(tenant, "docs", "a" if i % 2 else "b"), f"k{i}", {"n": i, "kind": "note"})
    lg.put(ns(tenant, "chat"), "c", {"n": 9, "kind": "turn"})
    assert len(lg.search(ns(tenant))) == 6
    docs = lg.search(ns(tenant, "docs"), limit=10)
    assert sorted(i.key for i in docs) == [f"k{i}" for i in range(5)]
    assert [i.key for i in lg.search(ns(tenant, "docs", "a"))] in (["k3", "k1"], ["k1", "k3"])
    assert {i.key for i in lg.search(ns(tenant), filter={"kind": "turn"})} == {"c"}
    assert {i.value["n"] for i in lg.search(ns(tenant), filter={"n": {"$gte": 3}})} == {3, 4, 9}
    page1 = lg.search(ns(tenant, "docs"), limit=2)
    page2 = lg.search(ns(tenant, "docs"), limit=2, offset=2)
    assert len(page1) == len(page2) == 2 and not {i.key for i in page1} & {i.key for i in page2}
    assert lg.list_namespaces(prefix=ns(tenant)) == [
        ns(tenant, "chat"),
        ns(tenant, "docs", "a"),
        ns(tenant, "docs", "b"),
    ]
    assert lg.list_namespaces(prefix=ns(tenant), max_depth=3) == [
        ns(tenant, "chat"),
        ns(tenant, "docs"),
    ]
    assert lg.list_namespaces(prefix=ns(tenant), suffix=("a",)) == [ns(tenant, "docs", "a")]


def test_bad_namespaces_and_options_are_refused_with_one_line(lg, store, new_tenant):
    tenant = new_tenant("lg")
    with pytest.raises(InvalidNamespaceError, match="user_id, project_id"):
        lg.put(("only-user",), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError):
        lg.put(ns(tenant, "a.b"), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError, match="never span tenants"):
        lg.list_namespaces(prefix=(tenant.user_id,))
    with pytest.raises(ValueError, match="index config does not apply"):
        MemoryPipelineStore(store, index={"dims": 3, "embed": lambda texts: [[0.0] * 3]})
    with pytest.raises(ValueError, match="index fields"):
        lg.put(ns(tenant), "k", {"a": 1}, index=["a"])


def test_abatch_runs_the_same_ops(lg, new_tenant):
    tenant = new_tenant("lg")

    async def go():
        await lg.abatch([PutOp(ns(tenant, "x"), "k", {"content": "async value"})])
        return await lg.abatch([GetOp(ns(tenant, "x"), "k"), GetOp(ns(tenant, "x"), "none")])

    got, missing = asyncio.run(go())
    assert got.value == {"content": "async value"} and missing is None


class State(TypedDict, total=False):
    fact: str
    question: str
    found: list[str]


@pytest.mark.parametrize("where", ["in-process", "remote"])
def test_a_state_graph_stores_then_searches(where, request, store, embedding_worker, new_tenant):
    if where == "remote":
        tenant, client = request.getfixturevalue("remote")
        lg = MemoryPipelineStore(client, wait_embedded=WAIT)
    else:
        tenant = new_tenant("lg")
        lg = MemoryPipelineStore(store, wait_embedded=WAIT)
    embedding_worker.watch(tenant)

    def remember(state: State, *, store: BaseStore) -> State:
        store.put(ns(tenant, "facts"), "release", {"content": state["fact"]})
        store.put(ns(tenant, "facts"), "lunch", {"content": "lunch is served at noon"})
        return {}

    def recall(state: State, *, store: BaseStore) -> State:
        hits = store.search(ns(tenant, "facts"), query=state["question"], limit=1)
        return {"found": [h.value["content"] for h in hits]}

    graph = StateGraph(State)
    graph.add_node("remember", remember)
    graph.add_node("recall", recall)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", "recall")
    graph.add_edge("recall", END)
    app = graph.compile(store=lg)
    out = app.invoke(
        {"fact": "the release train leaves on Thursdays", "question": "when is the release?"}
    )
    assert out["found"] == ["the release train leaves on Thursdays"]
    hit = lg.search(ns(tenant), query="when is the release?", limit=1)[0]
    assert hit.score is not None and hit.key == "release"


def test_the_contract_holds_through_the_service(remote, store, new_tenant):
    tenant, client = remote
    lg = MemoryPipelineStore(client)
    lg.put(ns(tenant, "a"), "k", {"content": "first", "n": 1})
    lg.put(ns(tenant, "a"), "k", {"content": "second", "n": 2})
    lg.put(ns(tenant, "b", "c"), "j", {"content": "other", "n": 3})
    got = lg.get(ns(tenant, "a"), "k")
    assert got.value == {"content": "second", "n": 2} and got.created_at < got.updated_at
    assert {i.key for i in lg.search(ns(tenant), filter={"n": {"$gt": 1}})} == {"k", "j"}
    assert lg.list_namespaces(prefix=ns(tenant)) == [ns(tenant, "a"), ns(tenant, "b", "c")]
    lg.put(ns(tenant, "a"), "k", None)
    assert lg.get(ns(tenant, "a"), "k") is None
    other = new_tenant("lgr")
    MemoryPipelineStore(store).put(ns(other, "a"), "k", {"content": "not yours"})
    with pytest.raises(PermissionError, match="another tenant"):  # the key decides the tenant
        lg.get(ns(other, "a"), "k")


@pytest.mark.parametrize("where", ["in-process", "remote"])
def test_the_retriever_in_a_runnable_chain(where, request, store, embedding_worker, new_tenant):
    tenant = new_tenant("lc")
    memories = store
    if where == "remote":
        tenant, memories = request.getfixturevalue("remote")
    embedding_worker.watch(tenant)
    ids = [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": text})
        for text in ("the staging database is on port 5433", "the cat is called Miso")
    ]
    store.wait_until_embedded(ids, WAIT)
    retriever = MemoryPipelineRetriever(
        memories=memories, user_id=tenant.user_id, project_id=tenant.project_id, limit=1
    )
    chain = retriever | RunnableLambda(lambda docs: [(d.page_content, d.metadata) for d in docs])
    ((text, meta),) = chain.invoke("which port does staging use?")
    assert text == "the staging database is on port 5433"
    assert meta["log_id"] == ids[0] and {"score", "similarity", "raw_data", "created_at"} <= set(
        meta
    )


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=st.tuples(label, label), b=st.tuples(label, label), rest=st.lists(label, max_size=3))
def test_one_namespace_tenant_never_sees_another(lg, a, b, rest):
    if a == b:
        return
    lg.put((*a, *rest), "shared-key", {"content": f"secret of {a}"})
    try:
        assert lg.get((*a, *rest), "shared-key") is not None
        assert lg.get((*b, *rest), "shared-key") is None
        assert lg.search(b) == [] and lg.list_namespaces(prefix=b) == []
        assert all(i.namespace[:2] == a for i in lg.search(a))
    finally:
        lg.delete((*a, *rest), "shared-key")
