"""The MCP server: tools ``remember``, ``recall``, ``forget`` and ``get_memory`` for agents.

Built on the official ``mcp`` SDK's :class:`MCPServer`. Which tenant a call acts for is decided
outside the tools, by ``principal_of``: over stdio the tenant given on the command line, over
streamable HTTP the bearer key of the request that carried the call (see
:mod:`memory_pipeline.service.http_api`). The tools act through
:class:`~memory_pipeline.service.access.TenantAccess`, like the HTTP API, so another tenant's
memory is "not found" here too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from memory_pipeline.memory_store import MemoryStore, MemoryWrite
from memory_pipeline.service.access import TenantAccess
from memory_pipeline.service.errors import service_error_of
from memory_pipeline.service.keys import Principal

INSTRUCTIONS = """\
A long-term memory shared across sessions. Call `recall` before answering questions about \
past work, decisions, people or events; call `remember` to keep something worth knowing \
later (a decision and its reason, a fix and its root cause, a user's preference). Memories \
are private to this key's user and project."""

#: Characters of a memory's text a recall result carries (get_memory gives the whole memory).
RECALL_TEXT_CHARS = 2000


def _clip(text: str) -> str:
    return text if len(text) <= RECALL_TEXT_CHARS else text[:RECALL_TEXT_CHARS] + " …"


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def build_mcp_server(store: MemoryStore, principal_of: Callable[[Context], Principal]) -> MCPServer:
    """An MCP server over ``store``; ``principal_of`` says who each tool call acts for."""
    server: MCPServer = MCPServer(
        "memory-pipeline",
        title="Memory",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )

    def access(ctx: Context) -> TenantAccess:
        return TenantAccess(store, principal_of(ctx))

    def tool_error(exc: Exception) -> Exception:
        error = service_error_of(exc)
        return ToolError(error.message) if error is not None else exc

    @server.tool(
        annotations=ToolAnnotations(title="Remember", destructiveHint=False, idempotentHint=True)
    )
    def remember(
        content: Annotated[
            str | dict[str, Any],
            Field(
                description="What to remember: plain text (stored as a note), or a JSON object "
                "such as a work log {task, summary, root_cause, solution, lesson, tags}, a "
                "conversation turn {speaker, text, datetime}, or any other shape."
            ),
        ],
        ctx: Context,
        external_id: Annotated[
            str | None,
            Field(
                description="Optional idempotency key: remembering again with the same key "
                "stores nothing new and returns the first memory's id."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Store a memory for later recall. Returns its id and status ("pending" until it has
        been indexed, usually within seconds; it is searchable once "embedded")."""
        raw = {"content": content} if isinstance(content, str) else content
        try:
            (result,) = access(ctx).create([{"raw_data": raw, "external_id": external_id}])
        except Exception as exc:
            raise tool_error(exc) from None
        if not isinstance(result, MemoryWrite):
            raise ToolError(result.message)
        return {"id": result.id, "created": result.created}

    @server.tool(annotations=ToolAnnotations(title="Recall", readOnlyHint=True))
    def recall(
        query: Annotated[
            str, Field(description="What to look for, in natural language or keywords.")
        ],
        ctx: Context,
        limit: Annotated[int, Field(description="Most memories to return.", ge=1, le=100)] = 10,
        mode: Annotated[
            str | None,
            Field(
                description="'hybrid' (default: meaning and words), 'vector' (meaning only) "
                "or 'keyword' (exact words, names, identifiers)."
            ),
        ] = None,
        memory_types: Annotated[
            list[str] | None,
            Field(description="Only these kinds: work_log, conversation_turn, note, other."),
        ] = None,
        since: Annotated[
            datetime | None,
            Field(description="Only memories that happened at or after this ISO 8601 time."),
        ] = None,
        until: Annotated[
            datetime | None,
            Field(description="Only memories that happened before this ISO 8601 time."),
        ] = None,
    ) -> dict[str, Any]:
        """Search the memories for those most relevant to a query, best first. Each result has
        the memory's id, score (higher is better), kind, when it happened, and its text."""
        try:
            results = access(ctx).search(
                query, limit=limit, mode=mode, memory_types=memory_types, since=since, until=until
            )
        except Exception as exc:
            raise tool_error(exc) from None
        return {
            "memories": [
                {
                    "id": r.log_id,
                    "score": round(r.score, 4),
                    "memory_type": r.memory_type,
                    "occurred_at": r.occurred_at.isoformat(),
                    "external_id": r.external_id,
                    "text": _clip(r.text),
                }
                for r in results
            ]
        }

    @server.tool(annotations=ToolAnnotations(title="Get memory", readOnlyHint=True))
    def get_memory(
        memory_id: Annotated[int, Field(description="The id recall or remember returned.")],
        ctx: Context,
    ) -> dict[str, Any]:
        """Fetch one memory in full: the JSON it was stored with (raw_data), its text, kind,
        times and indexing status."""
        try:
            row = access(ctx).get(memory_id)
        except Exception as exc:
            raise tool_error(exc) from None
        fields = (
            "id",
            "external_id",
            "status",
            "memory_type",
            "occurred_at",
            "created_at",
            "search_text",
            "raw_data",
        )
        return {k: _iso(row.get(k)) for k in fields}

    @server.tool(
        annotations=ToolAnnotations(title="Forget", destructiveHint=True, idempotentHint=True)
    )
    def forget(
        memory_id: Annotated[int, Field(description="The id of the memory to delete.")],
        ctx: Context,
    ) -> dict[str, Any]:
        """Delete a memory for good (for example one that is wrong or no longer wanted). It
        stops appearing in recall at once."""
        try:
            access(ctx).delete(memory_id)
        except Exception as exc:
            raise tool_error(exc) from None
        return {"deleted": memory_id}

    return server


def fixed_principal(principal: Principal) -> Callable[[Context], Principal]:
    """``principal_of`` for stdio: every call acts for the tenant of the command line."""
    return lambda _ctx: principal
