"""Running the service: ``memory-pipeline serve`` (HTTP + MCP on uvicorn) and ``mcp`` (stdio).

One process, one worker: the model is loaded once and stays warm, and concurrent searches
share it through the query batcher. Logs go to stderr; the access log names the method, path
and status of each request, never its headers (where the key travels).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.service.keys import Principal
from memory_pipeline.tenancy import Tenant

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

#: uvicorn's own configuration, with both its logs on stderr (stdout is for data).
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"},
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


#: OpenMP's threads sleep at once when idle instead of spinning (unless the environment says
#: otherwise): a service shares its cores with its requests, Postgres and Chroma, and on a busy
#: 2-core machine spinning made one query's embedding 10x slower (docs/decisions/0163).
OPENMP_WAIT_POLICY = "PASSIVE"


def _quiet_openmp() -> None:
    """Set OpenMP's wait policy before torch is imported (it is read once, at load)."""
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    auth: bool = True,
    max_request_bytes: int | None = None,
    batch_queries: bool = True,
    access_log: bool = True,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the HTTP API and MCP on ``host:port`` until SIGINT/SIGTERM.

    Refuses to run without keys (``auth=False``) on an address other machines reach.
    """
    import uvicorn

    from memory_pipeline.service.http_api import DEFAULT_MAX_REQUEST_BYTES, create_app

    if not auth and not is_loopback(host):
        raise ValueError(f"refusing to serve {host} without API keys; bind 127.0.0.1 or use keys")
    _quiet_openmp()
    store = MemoryStore.from_env()
    app = create_app(
        store,
        auth=auth,
        max_request_bytes=max_request_bytes or DEFAULT_MAX_REQUEST_BYTES,
        host=host,
        batch_queries=batch_queries,
    )

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                announce(
                    f"memory service: http://{host}:{port}  (API docs /docs, MCP /mcp"
                    + ("" if auth else "; NO AUTH")
                    + ")"
                )

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=LOG_CONFIG,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    try:
        _Server(config).run()
    finally:
        store.close()


def serve_mcp_stdio(user_id: str, project_id: str) -> None:
    """Serve the MCP tools over stdin/stdout for one tenant (desktop and coding agents)."""
    from memory_pipeline.service.mcp_tools import build_mcp_server, fixed_principal

    tenant = Tenant(user_id, project_id)
    _quiet_openmp()
    store = MemoryStore.from_env()
    # load the model while the agent host starts up, not in its first recall
    threading.Thread(
        target=store.embedder.embed_queries, args=(["warm up"],), name="warm-up", daemon=True
    ).start()
    server = build_mcp_server(store, fixed_principal(Principal(0, "stdio", tenant)))
    try:
        server.run("stdio")
    finally:
        store.close()
