"""``MemoryStore``: the Python API of DESIGN §5, over Postgres, Chroma and the embedder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory_pipeline.embedding import Embedder, load_embedder
from memory_pipeline.local_services import ServiceEndpoints, ensure_services
from memory_pipeline.memories import (
    MEMORY_STATES,
    TERMINAL_STATES,
    validate_external_id,
    validate_occurred_at,
    validate_raw_data,
)
from memory_pipeline.processing import ProcessOptions, process
from memory_pipeline.search import MemorySearch, SearchRequest, SearchResult
from memory_pipeline.search.second_stage import second_stage_of
from memory_pipeline.settings import Settings
from memory_pipeline.storage import (
    langgraph_items,
    live_models,
    memory_reads,
    memory_writes,
    tenant_layout,
    tenant_status,
)
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.storage.tenant_locks import tenant_lock
from memory_pipeline.storage.tenant_status import TenantTotals
from memory_pipeline.storage.vector_indexes import ensure_model_index
from memory_pipeline.tenancy import Tenant, TenantLayout, validate_tenant_id
from memory_pipeline.vector_store import ChromaVectorStore, VectorStoreUnavailable, connect_chroma

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemoryWrite:
    """What writing one memory of :meth:`MemoryStore.create_memory_logs` did.

    ``id`` and ``created`` (false: an earlier memory of the tenant has this external id, and
    ``id`` is its id) when stored; else ``error``, a one-line reason, and nothing was written.
    """

    id: int | None = None
    created: bool = False
    error: str | None = None


def wait_for_terminal_states(
    read_states: Callable[[list[int], float], dict[int, str]], ids: Iterable[int], timeout: float
) -> dict[int, str]:
    """Read the memories' states (``read_states(ids, seconds_left)``) until all are terminal.

    Returns their states; raises ``TimeoutError`` naming those still waiting after ``timeout``
    seconds. Reads back off from 50 ms to 1 s (a reader that blocks itself is read again soon).
    """
    wanted = sorted({int(i) for i in ids})
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        states = read_states(wanted, max(0.0, deadline - time.monotonic()))
        waiting = [i for i, s in states.items() if s not in TERMINAL_STATES]
        if not waiting:
            return states
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"{len(waiting)} memories not embedded after {timeout:.0f} s: {waiting[:10]}"
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, 1.0)


class MemoryStore(AbstractContextManager["MemoryStore"]):
    """Memories of every tenant: write them, process them, search them.

    Build it with :meth:`from_env` (which starts the home's local services when needed) or from
    explicit endpoints; use it as a context manager to close its connections.
    """

    def __init__(
        self,
        settings: Settings,
        endpoints: ServiceEndpoints,
        *,
        embedder: Embedder | None = None,
        migrate: bool = True,
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        if migrate:
            apply_migrations(endpoints.database_url)
        self.db = Database(endpoints.database_url)
        self._store: ChromaVectorStore | None = None
        self.embedder = embedder or load_embedder(
            settings.embedding_model,
            batch_size=settings.embedding_batch_size,
            precision=settings.embedding_precision,
            trace_queries=settings.query_trace,
            backend=settings.embedding_backend,
            exports_dir=settings.models_dir,
            sentence_vectors=settings.sentence_vectors,
        )
        self._model_index_ready = False

    @classmethod
    def from_env(cls, *, embedder: Embedder | None = None) -> MemoryStore:
        """A store configured from the environment; local services start if needed."""
        settings = Settings.from_env()
        return cls(settings, ensure_services(settings), embedder=embedder)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # --------------------------------------------------------------------------- components
    @property
    def vector_store(self) -> ChromaVectorStore:
        """The Chroma server's collections (connected on first use)."""
        if self._store is None:
            ep = self.endpoints
            self._store = ChromaVectorStore(
                connect_chroma(ep.chroma_host, ep.chroma_port, ep.chroma_token)
            )
        return self._store

    @property
    def search(self) -> MemorySearch:
        try:
            store: ChromaVectorStore | None = self.vector_store
        except VectorStoreUnavailable as exc:
            logger.warning("%s; searching pgvector only", exc)
            store = None
        return MemorySearch(
            self.db,
            store,
            self.embedder,
            second_stage=second_stage_of(self.settings),
            exact_max_vectors=self.settings.exact_search_max_vectors,
        )

    def process_options(self, **overrides: Any) -> ProcessOptions:
        return ProcessOptions.from_settings(self.settings, **overrides)

    def tenant_layout(self) -> TenantLayout:
        """The home's tenant layout, sharding the home first if it has grown past
        ``MEMORY_PIPELINE_SHARD_AFTER_TENANTS`` tenants (docs/decisions/0203)."""
        with self.db.connection() as conn:
            return tenant_layout.ensure_layout(
                conn,
                shards=self.settings.tenant_shards,
                after_tenants=self.settings.shard_after_tenants,
            )

    def ensure_model_index(self) -> None:
        """Create the pgvector index for the configured model once its dimension is known."""
        if not self._model_index_ready:
            ensure_model_index(
                self.endpoints.database_url,
                self.embedder.model_id,
                self.embedder.dimension,
                self.embedder.model_source,
            )
            self._model_index_ready = True

    # ------------------------------------------------------------------------------- writes
    def create_memory_log(
        self,
        user_id: str,
        project_id: str,
        raw_data: dict[str, Any],
        *,
        external_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> int:
        """Store a memory (``pending``) and return its id; a repeated external id returns the old id."""
        tenant = Tenant(user_id, project_id)
        raw = validate_raw_data(raw_data, self.settings.max_document_bytes)
        external_id = validate_external_id(external_id)
        occurred_at = validate_occurred_at(occurred_at)
        with self.db.connection() as conn:
            log_id, _ = memory_writes.insert_memory_log(
                conn, tenant, raw, external_id=external_id, occurred_at=occurred_at
            )
        return log_id

    def create_memory_logs(self, records: Sequence[Mapping[str, Any]]) -> list[MemoryWrite]:
        """Store many memories in one transaction; one :class:`MemoryWrite` per record, in order.

        Each record holds ``user_id``, ``project_id``, ``raw_data`` and optionally
        ``external_id`` and ``occurred_at`` (the arguments of :meth:`create_memory_log`). A
        record that is not valid gets its one-line error and is not written; the others are.
        A repeated ``(tenant, external_id)`` gets the existing id with ``created`` false.
        """
        writes: list[MemoryWrite | None] = []
        rows: list[memory_writes.NewMemoryRow] = []
        tenants: dict[tuple[Any, Any], Tenant] = {}  # a batch is mostly one tenant: check it once
        for record in records:
            try:
                rows.append(self._new_memory_row(record, tenants))
                writes.append(None)
            except ValueError as exc:
                writes.append(MemoryWrite(error=str(exc)))
        with self.db.connection() as conn:
            stored = iter(memory_writes.insert_memory_logs(conn, rows))
        return [w or MemoryWrite(*next(stored)) for w in writes]

    def _new_memory_row(
        self, record: Mapping[str, Any], tenants: dict[tuple[Any, Any], Tenant]
    ) -> memory_writes.NewMemoryRow:
        if not isinstance(record, Mapping):
            raise ValueError(f"a memory must be an object, got {type(record).__name__}")
        unknown = set(record) - {"user_id", "project_id", "raw_data", "external_id", "occurred_at"}
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        if "raw_data" not in record:
            raise ValueError("raw_data is required")
        ids = (record.get("user_id"), record.get("project_id"))
        tenant = tenants.get(ids) if all(isinstance(i, str) for i in ids) else None
        if tenant is None:
            tenant = tenants[ids] = Tenant(*ids)  # type: ignore[arg-type]
        return memory_writes.NewMemoryRow(
            tenant,
            validate_raw_data(record["raw_data"], self.settings.max_document_bytes),
            validate_external_id(record.get("external_id")),
            validate_occurred_at(record.get("occurred_at")),
        )

    def get_memory_log(self, log_id: int) -> dict[str, Any] | None:
        """The memory's fields (those of the CLI's ``get``), or ``None``."""
        with self.db.connection() as conn:
            return memory_reads.get_memory_log(conn, int(log_id))

    def update_memory_log(self, log_id: int, raw_data: dict[str, Any]) -> None:
        """Replace a memory's ``raw_data``; it is re-processed (re-embedded only if its text changed)."""
        raw = validate_raw_data(raw_data, self.settings.max_document_bytes)
        with self.db.connection() as conn:
            if not memory_writes.update_raw_data(conn, int(log_id), raw):
                raise ValueError(f"memory {log_id} does not exist")

    def delete_memory_log(self, log_id: int) -> bool:
        """Delete a memory; its vectors leave Chroma on the tenant's next run. Returns whether it existed."""
        with self.db.connection() as conn:
            return memory_writes.delete_memory_log(conn, int(log_id))

    def retry(self, user_id: str | None = None, project_id: str | None = None) -> int:
        """Put failed and dead rows back to pending; return how many."""
        key = (
            Tenant(user_id, project_id).key
            if user_id is not None or project_id is not None
            else None
        )
        with self.db.connection() as conn:
            return memory_writes.reset_for_retry(conn, key)

    def purge_tenant(self, user_id: str, project_id: str) -> dict[str, Any]:
        """Remove a tenant everywhere: its collections, rows, vectors, tombstones and record.

        Holds the tenant's advisory lock, so no run of the tenant writes meanwhile; no other
        tenant's rows or collections are touched.
        """
        tenant = Tenant(user_id, project_id)
        with self.db.connection() as conn, tenant_lock(conn, tenant):
            tenant = tenant_layout.placed(conn, [tenant])[0]
            # in a shard's collections only the tenant's vectors go (decision 0203)
            collections = self.vector_store.tenant_collection_names(tenant)
            for name in collections:
                self.vector_store.drop_collection(tenant, name=name)
            rows = memory_writes.purge_tenant_rows(conn, tenant.key)
        return {"tenant_key": tenant.key, "rows_deleted": rows, "collections_dropped": collections}

    # --------------------------------------------------------------------------- processing
    def process_pending(
        self,
        user_id: str | None = None,
        project_id: str | None = None,
        *,
        options: ProcessOptions | None = None,
    ) -> dict[str, int]:
        """Process the pending work of one tenant, or of every tenant; counts by outcome."""
        if (user_id is None) != (project_id is None):
            raise ValueError("give both user_id and project_id, or neither")
        tenants = None if user_id is None or project_id is None else [Tenant(user_id, project_id)]
        options = options or self.process_options()
        self.tenant_layout()  # a home past the tenant threshold becomes sharded first
        result = process(self.db, self.vector_store, self.embedder, tenants, options)
        return result.total.as_dict()

    def wait_until_embedded(self, ids: Iterable[int], timeout: float = 60.0) -> dict[int, str]:
        """Block until every id is ``embedded`` (or finally ``skipped``/``dead``); return their states.

        Raises ``TimeoutError`` naming the ids still pending after ``timeout`` seconds, and
        ``ValueError`` for an id that does not exist.
        """

        def read_states(wanted: list[int], _seconds_left: float) -> dict[int, str]:
            with self.db.connection() as conn:
                states = memory_reads.states_of(conn, wanted)
            missing = [i for i in wanted if i not in states]
            if missing:
                raise ValueError(f"memories do not exist: {missing[:10]}")
            return states

        return wait_for_terminal_states(read_states, ids, timeout)

    # ------------------------------------------------------------------------------- search
    def search_similar_memories(
        self,
        query: str,
        user_id: str,
        project_id: str,
        limit: int = 10,
        where_filter: dict[str, Any] | None = None,
        min_similarity: float = 0.0,
        enable_temporal_decay: bool = False,
        half_life_days: float = 30.0,
        *,
        mode: str | None = None,
        backend: str | None = None,
        memory_types: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        explain: bool = False,
    ) -> list[SearchResult]:
        """The tenant's memories that best match ``query``, best first (DESIGN §5).

        ``min_similarity`` drops results whose raw cosine similarity is lower; with
        ``enable_temporal_decay`` the score is multiplied by
        ``0.5 ** (age_days / half_life_days)`` (age from ``occurred_at``) and re-sorted.
        ``where_filter`` speaks Chroma's operator language over the metadata keys of DESIGN §3;
        ``memory_types``, ``since`` and ``until`` add to it. With ``explain`` each result
        carries an ``explanation`` (each retriever's rank and score, the fusion, context and
        decay, the matched chunk). Bad arguments raise ``ValueError``; an unknown tenant gives
        ``[]``.
        """
        request = SearchRequest.of(
            [query],
            user_id,
            project_id,
            limit,
            where_filter,
            min_similarity,
            enable_temporal_decay,
            half_life_days,
            mode=mode,
            backend=backend,
            memory_types=memory_types,
            since=since,
            until=until,
            explain=explain,
        )
        return self.search.run(request)[0]

    def search_many(
        self, queries: Sequence[str], user_id: str, project_id: str, limit: int = 10, **options: Any
    ) -> list[list[SearchResult]]:
        """Many queries for one tenant, embedded in one call; the other arguments as
        :meth:`search_similar_memories`."""
        return self.search.run(SearchRequest.of(queries, user_id, project_id, limit, **options))

    # ---------------------------------------------------------------- LangGraph store reads
    def langgraph_items(
        self,
        user_id: str,
        project_id: str,
        *,
        external_id: str | None = None,
        prefix: Sequence[str] = (),
        value_filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Rows (``id, raw_data, created_at, updated_at``) a LangGraph store wrote in the
        tenant: the one of ``external_id``, else those under ``prefix`` whose value contains
        ``value_filter``, newest first (memory_pipeline.integrations.langgraph)."""
        tenant = Tenant(user_id, project_id)
        with self.db.connection() as conn:
            if external_id is not None:
                row = langgraph_items.item_row(conn, tenant.key, external_id)
                return [] if row is None else [row]
            return langgraph_items.item_rows(
                conn, tenant.key, list(prefix), value_filter, int(limit), int(offset)
            )

    def langgraph_namespaces(self, user_id: str, project_id: str) -> list[list[str]]:
        """The namespaces (below the tenant) of the tenant's LangGraph store items."""
        with self.db.connection() as conn:
            return langgraph_items.namespaces(conn, Tenant(user_id, project_id).key)

    # ------------------------------------------------------------------------------- status
    def find_tenants(
        self, user_id: str | None = None, project_id: str | None = None, *, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The tenants of a user, of a project, or both (the CLI's ``tenants``): each with its
        tenant key, Dagster partition (its own, or its shard's), Chroma collection and counts."""
        if user_id is None and project_id is None:
            raise ValueError("give a user_id, a project_id or both")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        for value, name in ((user_id, "user_id"), (project_id, "project_id")):
            if value is not None:
                validate_tenant_id(value, name)
        with self.db.connection() as conn:
            layout = tenant_layout.read_layout(conn)
            found = tenant_layout.find_tenants(conn, user_id, project_id, limit)
            keys = [t.key for t in found]
            totals = tenant_status.tenant_totals(conn, keys, self.embedder.model_id)
            live = live_models.live_models_of(conn, keys)
        return [
            _directory_entry(
                t,
                layout,
                totals[t.key],
                ChromaVectorStore.live_collection_name(t, live[t.key] or self.embedder.model_id),
            )
            for t in found
        ]

    def status(self) -> dict[str, Any]:
        """Counts by state per tenant and in total (the CLI's ``status``)."""
        with self.db.connection() as conn:
            tenants = [dict(r) for r in tenant_status.status_counts(conn)]
        totals = {s: sum(int(t[s]) for t in tenants) for s in MEMORY_STATES}
        return {"tenants": tenants, "totals": totals}


def _directory_entry(
    tenant: Tenant, layout: TenantLayout, totals: TenantTotals, collection: str
) -> dict[str, Any]:
    """One tenant as ``find_tenants`` lists it."""
    return {
        "user_id": tenant.user_id,
        "project_id": tenant.project_id,
        "tenant_key": tenant.key,
        "partition": layout.partition_key(tenant),
        "shard": layout.shard_of(tenant.key),
        "collection": collection,
        **{state: getattr(totals, state) for state in MEMORY_STATES},
    }
