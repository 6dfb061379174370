"""``MemoryClient``: ``MemoryStore``'s methods over the memory service's HTTP API.

An application moves from in-process to remote by changing one line::

    store = MemoryStore.from_env()                                   # in-process
    store = MemoryClient("http://127.0.0.1:8765", api_key=KEY)       # through the service

Same method names, arguments and return types (``SearchResult`` objects, ``dict`` rows, ids),
and the same errors: bad input raises ``ValueError`` with the service's one-line message. A
refused key raises ``PermissionError``; an unreachable or unready service ``ConnectionError``.
With a tenant key, ``user_id`` and ``project_id`` may be ``None`` (the key implies them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from memory_pipeline.memory_store import MemoryWrite, wait_for_terminal_states
from memory_pipeline.search.result import SearchResult

#: Seconds a single request may take (a ``wait`` adds its own time).
DEFAULT_TIMEOUT = 60.0
#: Seconds the service is asked to block per call of :meth:`MemoryClient.wait_until_embedded`.
WAIT_SLICE_SECONDS = 30.0


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _search_result(data: Mapping[str, Any]) -> SearchResult:
    fields = dict(data)
    fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
    fields["created_at"] = datetime.fromisoformat(fields["created_at"])
    return SearchResult(**fields)


class MemoryClient:
    """A client of one memory service, authenticated by one API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:  # never the key
        return f"MemoryClient({str(self._http.base_url)!r})"

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------ HTTP
    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        missing_ok: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """The answer's JSON; ``None`` for a 404 when ``missing_ok``; else the error raised."""
        extra = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._http.request(
                method, path, json=None if body is None else _json_value(body), **extra
            )
        except httpx.TransportError as exc:
            raise ConnectionError(
                f"cannot reach the memory service at {self._http.base_url}: {exc}"
            ) from None
        if response.is_success:
            return response.json()
        if response.status_code == 404 and missing_ok:
            return None
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text.strip()[:200] or response.reason_phrase
        status = response.status_code
        if status in (401, 403):
            raise PermissionError(message)
        if status == 503:
            raise ConnectionError(message)
        if status in (400, 404, 409, 413, 422):
            raise ValueError(message)
        raise RuntimeError(f"the memory service answered {status}: {message}")

    # ----------------------------------------------------------------------------- writes
    def create_memory_log(
        self,
        user_id: str | None,
        project_id: str | None,
        raw_data: dict[str, Any],
        *,
        external_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> int:
        """Store a memory (``pending``) and return its id; a repeated external id returns the old id."""
        body = {
            "user_id": user_id,
            "project_id": project_id,
            "raw_data": raw_data,
            "external_id": external_id,
            "occurred_at": occurred_at,
        }
        return int(self._call("POST", "/v1/memories", _without_none(body))["id"])

    def create_memory_logs(self, records: Sequence[Mapping[str, Any]]) -> list[MemoryWrite]:
        """Store up to 1,000 memories at once; one :class:`MemoryWrite` per record, in order."""
        data = self._call("POST", "/v1/memories/batch", {"memories": list(records)})
        return [
            MemoryWrite(error=r["error"]["message"])
            if "error" in r
            else MemoryWrite(int(r["id"]), bool(r["created"]))
            for r in data["results"]
        ]

    def get_memory_log(self, log_id: int) -> dict[str, Any] | None:
        """The memory's fields (those of the CLI's ``get``), or ``None``."""
        return self._call("GET", f"/v1/memories/{int(log_id)}", missing_ok=True)

    def update_memory_log(self, log_id: int, raw_data: dict[str, Any]) -> None:
        """Replace a memory's ``raw_data``; ``ValueError`` if it does not exist."""
        self._call("PATCH", f"/v1/memories/{int(log_id)}", {"raw_data": raw_data})

    def delete_memory_log(self, log_id: int) -> bool:
        """Delete a memory; whether it existed."""
        return self._call("DELETE", f"/v1/memories/{int(log_id)}", missing_ok=True) is not None

    def wait_until_embedded(self, ids: Iterable[int], timeout: float = 60.0) -> dict[int, str]:
        """Block until every id is ``embedded`` (or finally ``skipped``/``dead``); their states.

        Raises ``TimeoutError`` naming the ids still pending after ``timeout`` seconds, and
        ``ValueError`` for an id that does not exist (or is another tenant's).
        """

        def read_states(wanted: list[int], seconds_left: float) -> dict[int, str]:
            slice_ = min(seconds_left, WAIT_SLICE_SECONDS)  # the service blocks this long
            data = self._call(
                "POST",
                "/v1/memories/wait",
                {"ids": wanted, "timeout": slice_},
                timeout=slice_ + DEFAULT_TIMEOUT,
            )
            return {int(k): v for k, v in data["states"].items()}

        return wait_for_terminal_states(read_states, ids, timeout)

    # ----------------------------------------------------------------------------- search
    def search_similar_memories(
        self,
        query: str,
        user_id: str | None = None,
        project_id: str | None = None,
        limit: int = 10,
        where_filter: dict[str, Any] | None = None,
        min_similarity: float = 0.0,
        enable_temporal_decay: bool = False,
        half_life_days: float = 30.0,
        **options: Any,
    ) -> list[SearchResult]:
        """The tenant's memories that best match ``query``, best first (DESIGN §5).

        ``options`` are :meth:`MemoryStore.search_similar_memories`' keyword-only ones (``mode``,
        ``backend``, ``memory_types``, ``since``, ``until``, ``explain``); the service checks them.
        """
        body = {
            "query": query,
            "user_id": user_id,
            "project_id": project_id,
            "limit": limit,
            "where_filter": where_filter,
            "min_similarity": min_similarity,
            "enable_temporal_decay": enable_temporal_decay,
            "half_life_days": half_life_days,
            **options,
        }
        data = self._call("POST", "/v1/search", _without_none(body))
        return [_search_result(r) for r in data["results"]]

    def search_many(
        self,
        queries: Sequence[str],
        user_id: str | None = None,
        project_id: str | None = None,
        limit: int = 10,
        **options: Any,
    ) -> list[list[SearchResult]]:
        """Many queries for one tenant, embedded in one call."""
        if isinstance(queries, str):
            raise ValueError("queries must be a list of strings, not one string")
        body = {
            "queries": list(queries),
            "user_id": user_id,
            "project_id": project_id,
            "limit": limit,
            **options,
        }
        data = self._call("POST", "/v1/search/batch", _without_none(body))
        return [[_search_result(r) for r in rs] for rs in data["results"]]

    # ---------------------------------------------------------------- LangGraph store reads
    def langgraph_items(
        self,
        user_id: str | None,
        project_id: str | None,
        *,
        external_id: str | None = None,
        prefix: Sequence[str] = (),
        value_filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """As :meth:`MemoryStore.langgraph_items` (timestamps as ISO 8601 strings)."""
        body = {
            "user_id": user_id,
            "project_id": project_id,
            "external_id": external_id,
            "prefix": list(prefix),
            "value_filter": value_filter,
            "limit": limit,
            "offset": offset,
        }
        return list(self._call("POST", "/v1/langgraph/items", _without_none(body))["items"])

    def langgraph_namespaces(self, user_id: str | None, project_id: str | None) -> list[list[str]]:
        """As :meth:`MemoryStore.langgraph_namespaces`."""
        body = _without_none({"user_id": user_id, "project_id": project_id})
        return list(self._call("POST", "/v1/langgraph/namespaces", body)["namespaces"])

    # ----------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Counts by state per tenant (those the key reaches) and in total."""
        return dict(self._call("GET", "/v1/status"))


def _without_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}
