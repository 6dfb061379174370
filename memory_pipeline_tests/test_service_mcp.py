"""The MCP server through the SDK's own client: over stdio and over streamable HTTP (issue 16)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from memory_pipeline.service import keys

EMBED_SECONDS = 120


def http_transport(service, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=120)
    return streamable_http_client(f"{service.base_url}/mcp", http_client=http)


async def remember_then_recall(
    transport: Any, store, text: str, query: str, mode: str = "auto"
) -> dict[str, Any]:
    """remember → (embedded by the worker) → recall → get_memory → forget; what each said."""
    async with Client(transport, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"remember", "recall", "forget", "get_memory"}
        remembered = await client.call_tool("remember", {"content": text, "external_id": "m-1"})
        assert not remembered.is_error, remembered.content
        memory_id = remembered.structured_content["id"]
        await asyncio.to_thread(store.wait_until_embedded, [memory_id], EMBED_SECONDS)
        recalled = await client.call_tool("recall", {"query": query, "limit": 5})
        got = await client.call_tool("get_memory", {"memory_id": memory_id})
        forgot = await client.call_tool("forget", {"memory_id": memory_id})
        gone = await client.call_tool("get_memory", {"memory_id": memory_id})
    return {
        "id": memory_id,
        "recalled": recalled.structured_content["memories"],
        "got": got.structured_content,
        "forgot": forgot.structured_content,
        "gone": gone,
    }


def check(said: dict[str, Any], text: str) -> None:
    assert said["recalled"][0]["id"] == said["id"]
    assert text in said["recalled"][0]["text"]
    assert said["got"]["raw_data"] == {"content": text}
    assert said["got"]["external_id"] == "m-1"
    assert said["forgot"] == {"deleted": said["id"]}
    assert said["gone"].is_error and "does not exist" in said["gone"].content[0].text


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # legacy: the initialize handshake
def test_mcp_over_streamable_http_remembers_then_recalls(
    service, store, embedding_worker, new_tenant, mode
):
    tenant = new_tenant("mcp-http")
    embedding_worker.watch(tenant)
    key = keys.create_key(store.db, tenant).key
    text = "The staging database password rotates every Monday at 09:00"
    said = asyncio.run(
        remember_then_recall(
            http_transport(service, key), store, text, "when does the password rotate?", mode
        )
    )
    check(said, text)
    assert store.get_memory_log(said["id"]) is None


def test_mcp_over_stdio_remembers_then_recalls(
    home_env, store, embedding_worker, new_tenant, tmp_path
):
    tenant = new_tenant("mcp-stdio", "project: with/odd ünïcode")
    embedding_worker.watch(tenant)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memory_pipeline.cli", "mcp", "--user", tenant.user_id],
        env={**home_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    params.args += ["--project", tenant.project_id]
    text = "Ana's grey cat is called Pixel"
    with open(tmp_path / "mcp-stdio.log", "w") as errlog:
        transport = stdio_client(params, errlog=errlog)
        said = asyncio.run(remember_then_recall(transport, store, text, "what is the cat called?"))
    check(said, text)
    assert store.get_memory_log(said["id"]) is None


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("which", ["no key", "wrong key", "revoked key", "admin key"])
def test_mcp_over_http_refuses_a_key_that_decides_no_tenant(
    service, store, new_tenant, which, mode
):
    tenant = new_tenant("mcp-refused")
    key = {
        "no key": None,
        "wrong key": "mpk_0123456789ab_" + "A" * 43,
        "revoked key": None,
        "admin key": keys.create_key(store.db, None).key,
    }[which]
    if which == "revoked key":
        new = keys.create_key(store.db, tenant)
        keys.revoke_key(store.db, new.id)
        key = new.key

    async def try_to_remember() -> None:
        async with Client(http_transport(service, key), mode=mode) as client:
            await client.call_tool("remember", {"content": "should never be stored"})

    with pytest.raises(Exception) as refused:
        asyncio.run(try_to_remember())
    reason = {
        "no key": "missing API key",
        "wrong key": "invalid or revoked API key",
        "revoked key": "invalid or revoked API key",
        "admin key": "MCP needs a tenant key",
    }[which]
    assert reason in _messages(refused.value)
    assert tenant.key not in {t["tenant_key"] for t in store.status()["tenants"]}


def _messages(exc: BaseException) -> str:
    """Every message in an exception and the groups and causes it carries."""
    parts = [str(exc)]
    for inner in getattr(exc, "exceptions", ()):
        parts.append(_messages(inner))
    if exc.__cause__ is not None:
        parts.append(_messages(exc.__cause__))
    return " | ".join(parts)


def test_the_readme_agent_host_snippet_names_a_real_command_and_endpoint():
    """The ``mcpServers`` entry the README tells people to paste parses and points at real doors."""
    import json
    from pathlib import Path

    from memory_pipeline.cli import build_parser
    from memory_pipeline.service.server import DEFAULT_HOST, DEFAULT_PORT

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("### Agents (MCP)")[1].split("```json")[1].split("```")[0]
    servers = json.loads(block)["mcpServers"]
    stdio, http = servers["memory"], servers["memory-http"]
    assert stdio["command"] == "memory-pipeline"
    args = build_parser().parse_args(stdio["args"])
    assert (args.verb, args.user, args.project) == ("mcp", "alice", "demo")
    assert http["url"] == f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/mcp"
    assert http["headers"]["Authorization"].startswith("Bearer mpk_")
