"""Isolation as a property: whatever two tenants are called, no endpoint and no MCP tool ever
returns, changes or reveals one tenant's memory to the other's key; a revoked key stops at once.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import httpx2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from memory_pipeline.service import keys
from memory_pipeline.tenancy import MAX_ID_LENGTH, Tenant

#: Tenant ids as people write them: separators of the tenant key and the partition key,
#: spaces, percent signs, unicode; anything but control characters.
tenant_ids = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40),
    st.sampled_from(["a:b", "a", "b:c", "a/b", "a%3Ab", " spaced ", "ünï cödé", "日本語", "🙂"]),
).filter(lambda s: len(s) <= MAX_ID_LENGTH)


def _search_bodies(marker: str) -> list[dict[str, Any]]:
    return [{"query": marker, "mode": m} for m in ("vector", "keyword", "hybrid")] + [
        {"query": marker, "backend": "pgvector", "mode": "vector", "limit": 100}
    ]


async def _mcp_as(base_url: str, key: str, victim_id: int, marker: str) -> list[Any]:
    """What the MCP tools answer another tenant's key about ``victim_id`` and ``marker``."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
    async with Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client:
        return [
            await client.call_tool("recall", {"query": marker, "limit": 50}),
            await client.call_tool("recall", {"query": marker, "mode": "keyword"}),
            await client.call_tool("get_memory", {"memory_id": victim_id}),
            await client.call_tool("forget", {"memory_id": victim_id}),
        ]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(victim_ids=st.tuples(tenant_ids, tenant_ids), intruder_ids=st.tuples(tenant_ids, tenant_ids))
def test_no_endpoint_or_tool_reaches_another_tenants_memory(any_service, victim_ids, intruder_ids):
    service, store = any_service  # per-tenant collections, then shard collections
    victim, intruder = Tenant(*victim_ids), Tenant(*intruder_ids)
    assume(victim.key != intruder.key)
    marker = f"zebra-{uuid.uuid4().hex[:12]} private note"  # unique to this example
    victim_id = store.create_memory_log(*victim_ids, {"content": marker})
    intruder_id = store.create_memory_log(*intruder_ids, {"content": "an intruder's own note"})
    for tenant in (victim, intruder):
        store.process_pending(tenant.user_id, tenant.project_id)
    assert store.get_memory_log(victim_id)["status"] == "embedded"
    before = store.get_memory_log(victim_id)
    key = keys.create_key(store.db, intruder).key
    names_victim = {"user_id": victim.user_id, "project_id": victim.project_id}

    with httpx.Client(
        base_url=service.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as api:
        answers = {
            "get": api.get(f"/v1/memories/{victim_id}"),
            "patch": api.patch(f"/v1/memories/{victim_id}", json={"raw_data": {"content": "x"}}),
            "delete": api.delete(f"/v1/memories/{victim_id}"),
            "wait": api.post("/v1/memories/wait", json={"ids": [victim_id], "timeout": 0}),
            "search as victim": api.post("/v1/search", json={"query": marker, **names_victim}),
            "write as victim": api.post(
                "/v1/memories", json={"raw_data": {"content": "planted"}, **names_victim}
            ),
            "batch as victim": api.post(
                "/v1/memories/batch", json={"memories": [{"raw_data": {"a": 1}, **names_victim}]}
            ),
            "status": api.get("/v1/status"),
            "search many": api.post("/v1/search/batch", json={"queries": [marker, "note"]}),
        }
        searches = [api.post("/v1/search", json=body) for body in _search_bodies(marker)]
        own = api.get(f"/v1/memories/{intruder_id}")
    tools = asyncio.run(_mcp_as(service.base_url, key, victim_id, marker))

    for name in ("get", "patch", "delete", "wait"):
        assert answers[name].status_code == 404, (name, answers[name].text)
        assert answers[name].json()["error"]["message"] == f"memory {victim_id} does not exist"
    for name in ("search as victim", "write as victim"):
        assert answers[name].status_code == 403, (name, answers[name].text)
    assert answers["batch as victim"].json()["results"][0]["error"]["code"] == "forbidden"
    assert [t["tenant_key"] for t in answers["status"].json()["tenants"]] == [intruder.key]
    for response in [*answers.values(), *searches]:
        assert marker not in response.text and victim.key not in response.text
    found = [r["log_id"] for s in searches for r in s.json()["results"]]
    found += [r["log_id"] for rs in answers["search many"].json()["results"] for r in rs]
    # Examples may share a tenant, so the intruder can own earlier examples' memories too.
    owners = {Tenant(row["user_id"], row["project_id"]) for row in map(store.get_memory_log, found)}
    assert victim_id not in found and owners <= {intruder}
    assert own.status_code == 200  # the key works for its own tenant

    recall, recall_keyword, got, forgot = tools
    assert all(m["id"] != victim_id for m in recall.structured_content["memories"])
    assert all(m["id"] != victim_id for m in recall_keyword.structured_content["memories"])
    assert got.is_error and forgot.is_error
    assert all(marker not in str(t.content) for t in tools)
    assert store.get_memory_log(victim_id) == before  # unchanged by anything above

    keys.revoke_key(store.db, keys.authenticate(store.db, key).key_id)
    with httpx.Client(
        base_url=service.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as api:
        assert api.get("/v1/status").status_code == 401
        assert api.get(f"/v1/memories/{intruder_id}").status_code == 401
        assert (
            api.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401
        )
