"""The memory service (issue 16): an HTTP API and an MCP server in front of ``MemoryStore``.

- :mod:`.keys` — API keys (tenant or admin), stored hashed, checked in constant time.
- :mod:`.access` — what a key may do: the one tenant rule both doors share.
- :mod:`.http_api` — the FastAPI app: ``/v1`` (JSON), probes, ``/mcp``.
- :mod:`.mcp_tools` — the MCP tools ``remember``, ``recall``, ``forget``, ``get_memory``.
- :mod:`.server` — ``memory-pipeline serve`` (uvicorn) and ``memory-pipeline mcp`` (stdio).
- :mod:`.launcher` — the service under ``memory-pipeline up``.

Importing this package imports none of FastAPI, uvicorn or mcp; its modules do.
"""
