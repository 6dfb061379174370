"""``MemoryPipelineStore``: a LangGraph ``BaseStore`` over ``MemoryStore`` or ``MemoryClient``.

Needs the ``langgraph`` extra. The namespace rule (docs/integrations.md): a namespace is
``(user_id, project_id, *rest)``; its first two labels name the tenant, ``rest`` is kept in the
memory's ``raw_data`` (``{"content", "langgraph": {"namespace": rest, "key", "value"}}``) and
filters like a folder. The key is the memory's ``external_id`` (``json([*rest, key])``), so a
``put`` is idempotent; a changed value re-embeds; ``put(..., None)`` deletes. ``search`` with a
``query`` runs the product's search (embedded memories only); without one it lists items,
newest first. No operation ever reads outside the tenant its namespace names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

# the filter and namespace-match semantics of langgraph's own InMemoryStore, not a copy of them
from langgraph.store.memory import _compare_values, _does_match

from memory_pipeline.client import MemoryClient
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.tenancy import Tenant

#: Items a filtered listing reads per tenant before filtering by operators in Python.
MAX_LISTED = 10_000
#: Search candidates read per requested result before namespace and filter are applied.
SEARCH_DEPTH = 4


def tenant_of(namespace: Sequence[str]) -> tuple[Tenant, tuple[str, ...]]:
    """The tenant a namespace names and the rest of it; ``InvalidNamespaceError`` otherwise."""
    if len(namespace) < 2:
        raise InvalidNamespaceError(
            f"namespace {tuple(namespace)} must start with (user_id, project_id)"
        )
    try:
        return Tenant(namespace[0], namespace[1]), tuple(namespace[2:])
    except ValueError as exc:
        raise InvalidNamespaceError(f"namespace {tuple(namespace)}: {exc}") from None


def _external_id(rest: Sequence[str], key: str) -> str:
    return json.dumps(["langgraph", *rest, key], ensure_ascii=False)


def _content(value: dict[str, Any]) -> str:
    text = value.get("content", value.get("text"))
    return text if isinstance(text, str) and text.strip() else json.dumps(value, sort_keys=True)


def _matches(value: dict[str, Any], value_filter: dict[str, Any] | None) -> bool:
    return all(_compare_values(value.get(k), v) for k, v in (value_filter or {}).items())


def _is_plain(value_filter: dict[str, Any] | None) -> bool:
    """Whether every condition is an equality Postgres' ``@>`` can answer."""
    return all(not isinstance(v, dict) for v in (value_filter or {}).values())


class MemoryPipelineStore(BaseStore):
    """LangGraph's long-term memory store on memory_pipeline's per-tenant memories.

    ``wait_embedded`` (seconds): each ``put`` waits until the pipeline has embedded the item,
    so the next ``search`` finds it (``None``: return at once; the memory is ``pending``).
    ``index``: LangGraph's embedding config does not apply (the product embeds with its own
    model); any value is refused.
    """

    __slots__ = ("memories", "wait_embedded")

    def __init__(
        self,
        memories: MemoryStore | MemoryClient,
        *,
        wait_embedded: float | None = None,
        index: Any = None,
    ) -> None:
        if index is not None:
            raise ValueError(
                "index config does not apply: memory_pipeline embeds memories with its own model"
            )
        if not isinstance(memories, MemoryStore | MemoryClient):
            raise TypeError(
                f"MemoryPipelineStore needs a MemoryStore or MemoryClient, not {type(memories)}"
            )
        self.memories = memories
        self.wait_embedded = wait_embedded

    # ---------------------------------------------------------------------------- batches
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return [self._run(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    def _run(self, op: Op) -> Result:
        validate_op_namespace(op)
        if isinstance(op, GetOp):
            return self._get(op)
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, PutOp):
            return self._put(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        raise ValueError(f"unknown store operation {type(op).__name__}")

    # --------------------------------------------------------------------------------- ops
    def _row(self, namespace: tuple[str, ...], key: str) -> dict[str, Any] | None:
        tenant, rest = tenant_of(namespace)
        rows = self.memories.langgraph_items(
            tenant.user_id, tenant.project_id, external_id=_external_id(rest, key)
        )
        return rows[0] if rows else None

    @staticmethod
    def _item(tenant: Tenant, row: dict[str, Any], score: float | None = None) -> SearchItem:
        meta = row["raw_data"]["langgraph"]
        return SearchItem(
            namespace=(tenant.user_id, tenant.project_id, *meta["namespace"]),
            key=meta["key"],
            value=meta["value"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            score=score,
        )

    def _get(self, op: GetOp) -> Item | None:
        row = self._row(op.namespace, op.key)
        if row is None:
            return None
        item = self._item(tenant_of(op.namespace)[0], row)
        return Item(
            value=item.value,
            key=item.key,
            namespace=item.namespace,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )

    def _put(self, op: PutOp) -> None:
        if op.ttl is not None:
            raise ValueError("ttl is not supported: memories live until deleted")
        if op.index not in (None, False):
            raise ValueError("index fields do not apply: memory_pipeline chooses what to embed")
        tenant, rest = tenant_of(op.namespace)
        external_id = _external_id(rest, op.key)
        if op.value is None:
            row = self._row(op.namespace, op.key)
            if row is not None:
                self.memories.delete_memory_log(row["id"])
            return
        value = dict(op.value)
        raw_data = {
            "content": _content(value),
            "langgraph": {"namespace": list(rest), "key": op.key, "value": value},
        }
        (write,) = self.memories.create_memory_logs(
            [
                {
                    "user_id": tenant.user_id,
                    "project_id": tenant.project_id,
                    "raw_data": raw_data,
                    "external_id": external_id,
                }
            ]
        )
        if write.error is not None:
            raise ValueError(write.error)
        assert write.id is not None
        if not write.created:
            self.memories.update_memory_log(write.id, raw_data)
        if self.wait_embedded is not None:
            self.memories.wait_until_embedded([write.id], self.wait_embedded)

    def _search(self, op: SearchOp) -> list[SearchItem]:
        tenant, prefix = tenant_of(op.namespace_prefix)
        if op.query:
            return self._semantic(tenant, prefix, op)
        plain = _is_plain(op.filter)
        rows = self.memories.langgraph_items(
            tenant.user_id,
            tenant.project_id,
            prefix=prefix,
            value_filter=op.filter if plain else None,
            limit=op.limit if plain else MAX_LISTED,
            offset=op.offset if plain else 0,
        )
        items = [self._item(tenant, r) for r in rows]
        if plain:
            return items
        kept = [i for i in items if _matches(i.value, op.filter)]
        return kept[op.offset : op.offset + op.limit]

    def _semantic(self, tenant: Tenant, prefix: tuple[str, ...], op: SearchOp) -> list[SearchItem]:
        wanted = op.offset + op.limit
        results = self.memories.search_similar_memories(
            op.query or "", tenant.user_id, tenant.project_id, max(10, wanted * SEARCH_DEPTH)
        )
        items: list[SearchItem] = []
        for r in results:
            meta = (r.raw_data or {}).get("langgraph")
            if not isinstance(meta, dict) or tuple(meta["namespace"][: len(prefix)]) != prefix:
                continue
            if not _matches(meta["value"], op.filter):
                continue
            row = self._row((tenant.user_id, tenant.project_id, *meta["namespace"]), meta["key"])
            if row is not None:  # for its updated_at (a search result has created_at only)
                items.append(self._item(tenant, row, r.score))
            if len(items) >= wanted:
                break
        return items[op.offset : wanted]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        prefix = next((c.path for c in op.match_conditions or () if c.match_type == "prefix"), ())
        if len(prefix) < 2 or "*" in prefix[:2]:
            raise InvalidNamespaceError(
                "list_namespaces needs a prefix naming (user_id, project_id): "
                "namespaces never span tenants"
            )
        tenant, _ = tenant_of(prefix[:2])
        rests = self.memories.langgraph_namespaces(tenant.user_id, tenant.project_id)
        found = {(tenant.user_id, tenant.project_id, *rest) for rest in rests}
        found = {ns for ns in found if all(_does_match(c, ns) for c in op.match_conditions or ())}
        if op.max_depth is not None:
            found = {ns[: op.max_depth] for ns in found}
        return sorted(found)[op.offset : op.offset + op.limit]
