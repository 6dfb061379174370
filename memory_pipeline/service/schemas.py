"""The HTTP API's request bodies (they also make the OpenAPI document at ``/docs``).

They check shapes only (required fields, no unknown fields, the request's own options); what a
memory may hold is the domain rules' to say (``MemoryStore`` applies them), so every door
answers a bad memory with the same message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memory_pipeline.service.access import MAX_WAIT_SECONDS

#: Most memories in one ``POST /v1/memories/batch``.
MAX_BATCH = 1000
#: Most queries in one ``POST /v1/search/batch``, and ids in one ``POST /v1/memories/wait``.
MAX_QUERIES = 100
MAX_WAIT_IDS = 1000

_WAIT = Field(
    None,
    ge=0,
    le=MAX_WAIT_SECONDS,
    description="Seconds to wait until the memory is embedded (read-your-writes); the answer's "
    "status says whether it was. Memories are embedded by the pipeline (`memory-pipeline up`).",
)
_TENANT = "Optional with a tenant key (which implies its tenant); required with an admin key."


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The memory's own fields are checked by the domain rules (memory_pipeline.memories,
# tenancy), not here, so every door gives the same message; the schema only documents them.
_STRING = {"type": "string"}
_RAW_DATA = Field(
    description="The memory: a JSON object of any shape.", json_schema_extra={"type": "object"}
)


class MemoryIn(Strict):
    """One memory to store."""

    user_id: Any = Field(None, description=_TENANT, json_schema_extra=_STRING)
    project_id: Any = Field(None, description=_TENANT, json_schema_extra=_STRING)
    raw_data: Any = _RAW_DATA
    external_id: Any = Field(
        None,
        description="Idempotency key, unique per tenant: a repeat returns the first id.",
        json_schema_extra=_STRING,
    )
    occurred_at: Any = Field(
        None,
        description="When it happened (ISO 8601); else read from raw_data or now.",
        json_schema_extra={"type": "string", "format": "date-time"},
    )
    wait: float | None = _WAIT

    def record(self) -> dict[str, Any]:
        """The record for ``create_memory_logs`` (``wait`` is the request's, not the memory's)."""
        fields = ("user_id", "project_id", "raw_data", "external_id", "occurred_at")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}


class MemoryBatchIn(Strict):
    """Many memories; each is checked on its own, so one bad record does not stop the others."""

    memories: list[dict[str, Any]] = Field(description=f"Up to {MAX_BATCH} memories.")
    wait: float | None = _WAIT


class MemoryPatch(Strict):
    """A new ``raw_data`` for a memory (it is processed again)."""

    raw_data: Any = _RAW_DATA
    wait: float | None = _WAIT


class WaitIn(Strict):
    """Memories to wait for."""

    ids: list[int] = Field(max_length=MAX_WAIT_IDS)
    timeout: float = Field(30.0, ge=0, le=MAX_WAIT_SECONDS)


class SearchOptions(Strict):
    """The arguments of ``search_similar_memories`` after the query (DESIGN §5)."""

    user_id: str | None = Field(None, description=_TENANT)
    project_id: str | None = Field(None, description=_TENANT)
    limit: int = 10
    where_filter: dict[str, Any] | None = Field(
        None, description="Chroma's operators over log_id, memory_type, occurred_at, ..."
    )
    min_similarity: float = 0.0
    enable_temporal_decay: bool = False
    half_life_days: float = 30.0
    mode: str | None = Field(None, description="vector, keyword or hybrid (default).")
    backend: str | None = Field(
        None, description="auto (default: small tenants exactly in Postgres), chroma or pgvector."
    )
    memory_types: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    explain: bool = Field(
        False, description="Each result carries `explanation`: why it ranked where it did."
    )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``TenantAccess.search``."""
        return self.model_dump(exclude={"query", "queries"})


class SearchIn(SearchOptions):
    """One search."""

    query: str


class SearchBatchIn(SearchOptions):
    """Many searches of one tenant, embedded together (``search_many``)."""

    queries: list[str] = Field(max_length=MAX_QUERIES)


class LangGraphTenantIn(Strict):
    """A tenant of LangGraph store items (memory_pipeline.integrations.langgraph)."""

    user_id: str | None = Field(None, description=_TENANT)
    project_id: str | None = Field(None, description=_TENANT)


class LangGraphItemsIn(LangGraphTenantIn):
    """The item of one external id, or the items under a namespace prefix."""

    external_id: str | None = None
    prefix: list[str] = Field(default_factory=list)
    value_filter: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=10_000)
    offset: int = Field(0, ge=0)
