"""The HTTP API (``/v1``, JSON) and the MCP endpoint (``/mcp``) of ``memory-pipeline serve``.

A thin door: it parses a request, authenticates its bearer key, calls
:class:`~memory_pipeline.service.access.TenantAccess` (and through it ``MemoryStore``) and
formats the answer. Errors are ``{"error": {"code", "message"}}`` with the status of
:mod:`memory_pipeline.service.errors`. Endpoints are plain functions, which FastAPI runs in
its thread pool: the store is synchronous, and concurrent searches meet in the query batcher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from psycopg_pool import PoolTimeout
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_pipeline.embedding.query_batcher import QueryBatcher
from memory_pipeline.memory_store import MemoryStore, MemoryWrite
from memory_pipeline.service import keys
from memory_pipeline.service.access import TenantAccess
from memory_pipeline.service.errors import (
    BadRequest,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    Unavailable,
    service_error_of,
)
from memory_pipeline.service.keys import Principal
from memory_pipeline.service.mcp_tools import build_mcp_server
from memory_pipeline.service.metrics import METRICS_PATH, RequestMetrics, ServiceMetrics
from memory_pipeline.service.schemas import (
    MAX_BATCH,
    LangGraphItemsIn,
    LangGraphTenantIn,
    MemoryBatchIn,
    MemoryIn,
    MemoryPatch,
    SearchBatchIn,
    SearchIn,
    WaitIn,
)

logger = logging.getLogger(__name__)

#: Largest request body accepted (``serve --max-request-bytes``): a full batch of typical
#: memories fits; one memory alone is bounded by MEMORY_PIPELINE_MAX_DOCUMENT_BYTES.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: Threads that run endpoints (searches wait in the batcher, writes in Postgres).
WORKER_THREADS = 64
#: Who a request acts for when the service runs without keys (``serve --no-auth``).
NO_AUTH_PRINCIPAL = Principal(0, "auth disabled", None)
INTERNAL_ERROR = ServiceError("internal error; see the service's log")
WARM_UP_QUERIES = ("warm up the query encoder", "and trace it for the next queries")


class JSON(JSONResponse):
    """JSON through orjson (a search's answer: 0.41 -> 0.05 ms), datetimes as ISO 8601."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(error: ServiceError) -> JSON:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSON(
        {"error": {"code": error.code, "message": error.message}},
        status_code=error.status,
        headers=headers,
    )


class RequestBodyLimit:
    """Answers 413 to a request whose body is over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"the request body is over the limit of {self.max_bytes} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except PayloadTooLarge:
            if started:
                raise
            await error_response(too_large)(scope, receive, send)


class ServiceState:
    """What the endpoints share: the store, how keys are checked, and readiness."""

    def __init__(self, store: MemoryStore, *, auth: bool) -> None:
        self.store = store
        self.auth = auth
        self.model_ready = threading.Event()
        self.model_error: str | None = None

    def principal_of(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header's value; ``Unauthorized`` otherwise."""
        if not self.auth:
            return NO_AUTH_PRINCIPAL
        if not authorization:
            raise Unauthorized("missing API key: send the header Authorization: Bearer <key>")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("the Authorization header must read: Bearer <key>")
        principal = keys.authenticate(self.store.db, key.strip())
        if principal is None:
            raise Unauthorized("invalid or revoked API key")
        return principal

    def warm_up(self) -> None:
        """Load the model and make its query trace, so that the first search is fast."""
        try:
            for text in WARM_UP_QUERIES:
                self.store.embedder.embed_queries([text])
            self.store.vector_store  # noqa: B018 (connects to Chroma)
        except Exception as exc:  # readiness reports it; searches then fail with it
            self.model_error = f"{type(exc).__name__}: {exc}"
            logger.error("the service could not warm up: %s", self.model_error)
        self.model_ready.set()

    def require_model(self) -> None:
        if not self.model_ready.is_set():
            raise Unavailable("the embedding model is still loading; retry shortly")
        if self.model_error is not None:
            raise Unavailable(f"the embedding model is not available: {self.model_error}")

    def readiness(self) -> list[str]:
        """Why the service cannot serve searches now (empty: ready)."""
        problems: list[str] = []
        try:
            with self.store.db.autocommit_connection() as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            problems.append(f"postgres: {' '.join(str(exc).split()) or type(exc).__name__}")
        try:
            self.store.vector_store.client.heartbeat()
        except Exception as exc:
            problems.append(f"chroma: {' '.join(str(exc).split()) or type(exc).__name__}")
        if not self.model_ready.is_set():
            problems.append("model: still loading")
        elif self.model_error is not None:
            problems.append(f"model: {self.model_error}")
        return problems


#: JSON-RPC error code of a request refused at ``/mcp`` (the implementation-defined range).
MCP_REFUSED_CODE = -32001
#: Paths that need a key; everything else (probes, /docs) does not.
API_PREFIX, MCP_PATH = "/v1/", "/mcp"


class BearerAuth:
    """Finds who a request to ``/v1/`` or ``/mcp`` acts for, before anything else reads it.

    The principal goes to ``scope["state"]["principal"]``; a request without a valid key is
    answered here (401), and ``/mcp`` takes tenant keys only (403: the key decides the tenant),
    with a JSON-RPC error there so that MCP clients show the reason. A middleware rather than
    FastAPI dependencies: their resolution cost ~1 ms per request, a third of the HTTP cost.
    """

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        is_mcp = path == MCP_PATH
        if scope["type"] != "http" or not (is_mcp or path.startswith(API_PREFIX)):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        try:
            principal = await anyio.to_thread.run_sync(
                self.state.principal_of, authorization or None
            )
            if is_mcp and principal.tenant is None:
                raise Forbidden("MCP needs a tenant key: the key decides whose memories it reaches")
        except Exception as raised:  # outside the app's handlers: map it here (Postgres down: 503)
            exc = service_error_of(raised)
            if exc is None:
                logger.error("checking an API key failed: %s", type(raised).__name__)
                exc = INTERNAL_ERROR
            response = error_response(exc)
            if is_mcp:
                body = {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": MCP_REFUSED_CODE, "message": f"{exc.code}: {exc.message}"},
                }
                challenge = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                response = JSON(body, status_code=exc.status, headers=challenge)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _principal_of_mcp_call(ctx: Any) -> Principal:
    request = ctx.request_context.request
    principal = request.state.principal if request is not None else None
    if not isinstance(principal, Principal):  # never: BearerAuth guards the endpoint
        raise Unauthorized("no API key on this MCP request")
    return principal


def _write_json(write: MemoryWrite | ServiceError) -> dict[str, Any]:
    if isinstance(write, ServiceError):
        return {"error": {"code": write.code, "message": write.message}}
    return {"id": write.id, "created": write.created}


def _validation_message(exc: RequestValidationError) -> tuple[bool, str]:
    """(whether the body was not JSON at all, a one-line message for the first error)."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return True, "the request body is not valid JSON"
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "missing" and not loc:
        return True, "the request needs a JSON body"
    where = ".".join(loc) or "body"
    return False, f"{where}: {first.get('msg', 'invalid')}"


def _access(request: Request) -> TenantAccess:
    """What the request's key may do (:class:`BearerAuth` has found the key's principal)."""
    state: ServiceState = request.app.state.service
    return TenantAccess(state.store, request.state.principal)


def _document_bearer_keys(app: FastAPI) -> None:
    """Show the API's bearer keys in the OpenAPI document (``/docs``'s Authorize button)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `memory-pipeline keys create`",
                }
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith(API_PREFIX) or path == METRICS_PATH:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    store: MemoryStore,
    *,
    auth: bool = True,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    host: str = "127.0.0.1",
    batch_queries: bool = True,
) -> FastAPI:
    """The service's ASGI app over ``store`` (whose embedder gains a query batcher)."""
    if batch_queries and not isinstance(store.embedder, QueryBatcher):
        store.embedder = QueryBatcher(store.embedder)  # type: ignore[assignment]
    state = ServiceState(store, auth=auth)
    metrics = ServiceMetrics(store.db.autocommit_connection)
    if isinstance(store.embedder, QueryBatcher):
        store.embedder.on_encode = metrics.observe_encode
    mcp_server = build_mcp_server(store, _principal_of_mcp_call)
    mcp_app = mcp_server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, host=host
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        threading.Thread(target=state.warm_up, name="warm-up", daemon=True).start()
        async with mcp_server.session_manager.run():
            yield

    app = FastAPI(
        title="memory-pipeline",
        summary="Memories for AI agents: store, search and manage them per tenant.",
        version="1",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.state.service = state
    app.state.metrics = metrics

    # ------------------------------------------------------------------------- errors
    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        not_json, message = _validation_message(exc)
        return error_response(BadRequest(message) if not_json else Invalid(message))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, ServiceError):  # e.g. the body limit, hit while parsing
            return error_response(exc.__cause__)
        if exc.status_code == 404:
            return error_response(NotFound(f"no such endpoint: {request.url.path}"))
        code = "method_not_allowed" if exc.status_code == 405 else "http_error"
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return JSON(body, status_code=exc.status_code, headers=exc.headers)

    async def _application_error(request: Request, exc: Exception) -> Response:
        error = service_error_of(exc)
        if error is None:
            logger.error(
                "%s %s failed: %s: %s",
                request.method,
                request.url.path,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            error = INTERNAL_ERROR
        return error_response(error)

    async def _crash(_request: Request, _exc: Exception) -> Response:  # uvicorn logs it
        return error_response(INTERNAL_ERROR)

    for kind in (ValueError, ConnectionError, RuntimeError, psycopg.Error, PoolTimeout):
        app.add_exception_handler(kind, _application_error)
    app.add_exception_handler(Exception, _crash)

    # --------------------------------------------------------------------------- probes
    @app.get("/healthz", tags=["probes"], summary="The process is alive")
    def healthz() -> JSON:
        return JSON({"status": "ok"})

    @app.get("/readyz", tags=["probes"], summary="Postgres, Chroma and the model are ready")
    def readyz() -> Response:
        problems = state.readiness()
        if problems:
            return error_response(Unavailable("not ready: " + "; ".join(problems)))
        return JSON({"status": "ready"})

    @app.get(METRICS_PATH, tags=["probes"], summary="Prometheus metrics (admin key)")
    def prometheus_metrics(request: Request) -> Response:
        # counts of every tenant together: an admin key's (docs/service.md, "Metrics")
        principal = state.principal_of(request.headers.get("authorization"))
        if principal.tenant is not None:
            raise Forbidden("/metrics needs an admin key: it shows every tenant's counts")
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------- memories
    # Endpoints return their JSON response themselves: a returned dict would be walked by
    # FastAPI's jsonable_encoder first (raw_data and all), the largest part of a search's
    # HTTP cost.
    def _stored(access: TenantAccess, log_id: int, wait: float | None, *, new: bool) -> dict:
        """``{"id", "status"}`` of a memory just written, after waiting if asked to."""
        if wait:
            return {"id": log_id, "status": access.wait([log_id], wait)[log_id]}
        return {"id": log_id, "status": "pending" if new else access.get(log_id)["status"]}

    @app.post("/v1/memories", status_code=201, tags=["memories"], summary="Store a memory")
    def create_memory(body: MemoryIn, request: Request) -> JSON:
        access = _access(request)
        (write,) = access.create([body.record()])
        if isinstance(write, ServiceError):
            raise write
        assert write.id is not None
        stored = _stored(access, write.id, body.wait, new=write.created)
        return JSON(stored, status_code=201 if write.created else 200)

    @app.post("/v1/memories/batch", tags=["memories"], summary="Store up to 1,000 memories")
    def create_memories(body: MemoryBatchIn, request: Request) -> JSON:
        access = _access(request)
        if len(body.memories) > MAX_BATCH:
            raise PayloadTooLarge(
                f"{len(body.memories)} memories in one batch; the limit is {MAX_BATCH}"
            )
        records: list[dict[str, Any]] = []
        invalid: dict[int, ServiceError] = {}
        for index, raw in enumerate(body.memories):
            try:
                records.append(MemoryIn.model_validate(raw).record())
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "memory"
                invalid[index] = Invalid(f"{where}: {first['msg']}")
                records.append({})
        writes = access.create([r for i, r in enumerate(records) if i not in invalid])
        stored = iter(writes)
        results = [
            _write_json(invalid[i] if i in invalid else next(stored)) for i in range(len(records))
        ]
        if body.wait:
            ids = [r["id"] for r in results if "id" in r]
            states = access.wait(ids, body.wait) if ids else {}
            for r in results:
                if "id" in r:
                    r["status"] = states[r["id"]]
        return JSON({"results": results})

    @app.post("/v1/memories/wait", tags=["memories"], summary="Wait until memories are embedded")
    def wait_for_memories(body: WaitIn, request: Request) -> JSON:
        access = _access(request)
        states = access.wait(body.ids, body.timeout)
        return JSON({"states": {str(k): v for k, v in states.items()}})

    @app.get("/v1/memories/{memory_id}", tags=["memories"], summary="One memory")
    def get_memory(memory_id: int, request: Request) -> JSON:
        access = _access(request)
        return JSON(access.get(memory_id))

    @app.patch("/v1/memories/{memory_id}", tags=["memories"], summary="Replace raw_data")
    def update_memory(memory_id: int, body: MemoryPatch, request: Request) -> JSON:
        access = _access(request)
        access.update(memory_id, body.raw_data)
        return JSON(_stored(access, memory_id, body.wait, new=False))

    @app.delete("/v1/memories/{memory_id}", tags=["memories"], summary="Delete a memory")
    def delete_memory(memory_id: int, request: Request) -> JSON:
        access = _access(request)
        access.delete(memory_id)
        return JSON({"deleted": memory_id})

    # --------------------------------------------------------------------------- search
    @app.post("/v1/search", tags=["search"], summary="Search one tenant's memories")
    def search(body: SearchIn, request: Request) -> JSON:
        access = _access(request)
        state.require_model()
        with metrics.timed_stage("search"):
            results = access.search(body.query, **body.options())
        return JSON({"results": [r.to_json() for r in results]})

    @app.post("/v1/search/batch", tags=["search"], summary="Many searches of one tenant")
    def search_batch(body: SearchBatchIn, request: Request) -> JSON:
        access = _access(request)
        state.require_model()
        with metrics.timed_stage("search"):
            results = access.search_many(body.queries, **body.options())
        return JSON({"results": [[r.to_json() for r in rs] for rs in results]})

    # ------------------------------------------------------------- LangGraph store reads
    @app.post("/v1/langgraph/items", tags=["integrations"], summary="LangGraph store items")
    def langgraph_items(body: LangGraphItemsIn, request: Request) -> JSON:
        tenant = _access(request).tenant(body.user_id, body.project_id)
        rows = store.langgraph_items(
            tenant.user_id, tenant.project_id, **body.model_dump(exclude={"user_id", "project_id"})
        )
        return JSON({"items": rows})

    @app.post("/v1/langgraph/namespaces", tags=["integrations"], summary="LangGraph namespaces")
    def langgraph_namespaces(body: LangGraphTenantIn, request: Request) -> JSON:
        tenant = _access(request).tenant(body.user_id, body.project_id)
        return JSON({"namespaces": store.langgraph_namespaces(tenant.user_id, tenant.project_id)})

    # --------------------------------------------------------------------------- status
    @app.get("/v1/status", tags=["status"], summary="Counts by state of the key's tenants")
    def status(request: Request) -> JSON:
        access = _access(request)
        return JSON(access.status())

    app.router.routes.extend(mcp_app.routes)  # POST/GET/DELETE /mcp
    app.add_middleware(BearerAuth, state=state)
    app.add_middleware(RequestBodyLimit, max_bytes=max_request_bytes)
    app.add_middleware(
        RequestMetrics, metrics=metrics, routes=app.router.routes
    )  # outermost: counts 413s and 401s too
    _document_bearer_keys(app)
    return app
