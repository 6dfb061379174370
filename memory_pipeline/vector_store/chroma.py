"""Chroma access: per-tenant or per-shard collections, upserts by vector id, tenant-filtered
queries.

A tenant whose ``shard`` is set shares its shard's collection (one per model) with the shard's
other tenants: every read, delete and query of it then filters on its ``tenant_key``, and
"dropping" its collection removes only its vectors (docs/decisions/0203-tenant-shards.md).

Chroma never embeds anything here: collections are created with ``embedding_function=None`` and
every call passes vectors we computed (Chroma's default function would try to download a model).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memory_pipeline.tenancy import (
    SHARD_COLLECTION_PREFIX,
    Tenant,
    shard_collection_name,
    shard_collection_prefix,
)

logger = logging.getLogger(__name__)

Metadata = Mapping[str, str | int | float | bool]


class VectorStoreUnavailable(RuntimeError):
    """Chroma could not be reached or refused a request; the run should fail and be retried."""


def vector_id(log_id: int, chunk_index: int) -> str:
    """The id of a memory's vector: ``str(id)`` for chunk 0, ``f"{id}#{n}"`` for chunk n."""
    return str(log_id) if chunk_index == 0 else f"{log_id}#{chunk_index}"


def log_id_of(vector_id: str) -> int | None:
    """The memory id a vector id names (see :func:`vector_id`), or ``None`` if it names none."""
    head = vector_id.split("#", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def connect_chroma(host: str, port: int, token: str | None = None) -> Any:
    """An ``HttpClient`` for the Chroma server at ``host:port`` (token auth when given)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    options: dict[str, Any] = {"anonymized_telemetry": False}
    if token:
        options["chroma_client_auth_provider"] = "chromadb.auth.token_authn.TokenAuthClientProvider"
        options["chroma_client_auth_credentials"] = token
    try:
        client = chromadb.HttpClient(host=host, port=port, settings=ChromaSettings(**options))
        client.heartbeat()
    except Exception as exc:
        raise VectorStoreUnavailable(
            f"cannot reach the Chroma server at {host}:{port}: {exc}"
        ) from exc
    return client


def vector_metadata(
    tenant: Tenant,
    model_id: str,
    log_id: int,
    chunk_index: int,
    memory_type: str,
    occurred_at: datetime,
) -> dict[str, str | int | float]:
    """The metadata every Chroma vector carries (DESIGN §3)."""
    return {
        "log_id": int(log_id),
        "chunk_index": int(chunk_index),
        "tenant_key": tenant.key,
        "user_id": tenant.user_id,
        "project_id": tenant.project_id,
        "memory_type": memory_type,
        "occurred_at": occurred_at.astimezone(UTC).timestamp(),
        "embedding_model": model_id,
    }


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One vector returned by a query: its memory, id, cosine similarity and metadata.

    ``metadata`` is empty when the query did not ask for it.
    """

    log_id: int
    vector_id: str
    similarity: float
    metadata: Mapping[str, Any]


def _batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def is_shard_collection(name: str) -> bool:
    """Whether a collection is a shard's, shared by several tenants."""
    return name.startswith(SHARD_COLLECTION_PREFIX)


def _and(first: Mapping[str, Any], second: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"$and": [dict(first), dict(second)]} if second else dict(first)


class ChromaVectorStore:
    """The tenants' collections on one Chroma server."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._max_batch = int(client.get_max_batch_size())
        # Collections that queries found, by (tenant key, placement, model): a search then
        # costs one request, not two. A collection dropped meanwhile (repair, purge, model
        # switch, a move to a shard) is looked up again (see query).
        self._query_collections: dict[tuple[str, int | None, str], Any] = {}

    def _call(self, what: str, tenant: Tenant, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (VectorStoreUnavailable, ValueError):
            raise
        except Exception as exc:
            raise VectorStoreUnavailable(
                f"Chroma {what} failed for tenant {tenant}: {exc}"
            ) from exc

    @staticmethod
    def live_collection_name(tenant: Tenant, model_id: str) -> str:
        """Where the tenant's vectors of ``model_id`` are searched: its own collection (which
        holds one model at a time), or its shard's collection of that model."""
        if tenant.shard is None:
            return tenant.collection_name
        return shard_collection_name(tenant.shard, model_id)

    @staticmethod
    def _name(tenant: Tenant, name: str | None) -> str:
        if name:
            return name
        if tenant.shard is not None:  # a shard has a collection per model: say which
            raise ValueError(
                f"tenant {tenant} lives in shard {tenant.shard}: name the shard collection"
            )
        return tenant.collection_name

    def collection(self, tenant: Tenant, model_id: str, *, name: str | None = None) -> Any:
        """Open (creating if needed) the tenant's collection and check it belongs to it.

        Raises ``ValueError`` if the collection's recorded tenant (or shard) or model differs.
        """
        name = name or self.live_collection_name(tenant, model_id)
        metadata: dict[str, Any] = (
            {"shard": tenant.shard, "embedding_model": model_id}
            if is_shard_collection(name)
            else {
                "user_id": tenant.user_id,
                "project_id": tenant.project_id,
                "embedding_model": model_id,
            }
        )
        collection = self._call(
            "open collection",
            tenant,
            self.client.get_or_create_collection,
            name,
            metadata=metadata,
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        self._verify(collection, tenant, model_id)
        return collection

    @staticmethod
    def building_collection_name(tenant: Tenant, model_id: str) -> str:
        """Where a tenant's vectors of a model being rolled out are built (DESIGN §3); for a
        tenant in a shard, that shard's collection of the model."""
        if tenant.shard is not None:
            return shard_collection_name(tenant.shard, model_id)
        return f"{tenant.collection_name}__{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"

    def collection_for_model(self, tenant: Tenant, model_id: str) -> Any | None:
        """The tenant's collection that holds vectors of ``model_id``: the live one, or the one
        built (or retired) aside under the model's name; ``None`` if there is none."""
        if tenant.shard is not None:
            return self.existing_collection(
                tenant, name=shard_collection_name(tenant.shard, model_id)
            )
        for name in (tenant.collection_name, self.building_collection_name(tenant, model_id)):
            collection = self.existing_collection(tenant, name=name)
            if (
                collection is not None
                and (collection.metadata or {}).get("embedding_model") == model_id
            ):
                return collection
        return None

    def swap_in(self, tenant: Tenant, new_model: str, old_model: str | None) -> None:
        """Make the collection built for ``new_model`` the tenant's live collection.

        Each rename is atomic and every intermediate state still holds each model's vectors
        under a name :meth:`collection_for_model` finds, so searches never see a gap. A tenant
        in a shard has nothing to rename: each model has its own shard collection.
        """
        self._forget_query_collections(tenant)
        if tenant.shard is not None:
            return
        building = self.existing_collection(
            tenant, name=self.building_collection_name(tenant, new_model)
        )
        if building is None:
            raise ValueError(f"no collection was built for model {new_model!r} (tenant {tenant})")
        live = self.existing_collection(tenant)
        if live is not None:
            retired_model = (live.metadata or {}).get("embedding_model") or old_model or "unknown"
            retired_name = self.building_collection_name(tenant, retired_model)
            if self.existing_collection(tenant, name=retired_name) is not None:
                self.drop_collection(tenant, name=retired_name)
            self._call("rename collection", tenant, live.modify, name=retired_name)
        self._call("rename collection", tenant, building.modify, name=tenant.collection_name)

    def existing_collection(self, tenant: Tenant, *, name: str | None = None) -> Any | None:
        """The tenant's collection if it exists (never creates one)."""
        from chromadb.errors import NotFoundError

        try:
            return self.client.get_collection(self._name(tenant, name), embedding_function=None)
        except NotFoundError:
            return None
        except Exception as exc:
            raise VectorStoreUnavailable(
                f"Chroma open collection failed for tenant {tenant}: {exc}"
            ) from exc

    @staticmethod
    def _verify(collection: Any, tenant: Tenant, model_id: str | None) -> None:
        meta = collection.metadata or {}
        if is_shard_collection(collection.name):
            if tenant.shard is None or meta.get("shard") != tenant.shard:
                raise ValueError(
                    f"Chroma collection {collection.name} is shard {meta.get('shard')!r}'s, "
                    f"not the collection of tenant {tenant} (shard {tenant.shard})"
                )
        elif meta.get("user_id") != tenant.user_id or meta.get("project_id") != tenant.project_id:
            raise ValueError(
                f"Chroma collection {collection.name} belongs to "
                f"{meta.get('user_id')!r}:{meta.get('project_id')!r}, not to tenant {tenant}"
            )
        if model_id is not None and meta.get("embedding_model") != model_id:
            raise ValueError(
                f"Chroma collection {collection.name} holds vectors of model "
                f"{meta.get('embedding_model')!r}, not {model_id!r} (tenant {tenant})"
            )

    def upsert_vectors(
        self,
        tenant: Tenant,
        model_id: str,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadatas: Sequence[Metadata],
        *,
        collection_name: str | None = None,
    ) -> None:
        """Insert or replace vectors by id (idempotent: a retry never duplicates)."""
        if not ids:
            return
        collection = self.collection(tenant, model_id, name=collection_name)
        for part in _batches(len(ids), self._max_batch):
            self._call(
                "upsert",
                tenant,
                collection.upsert,
                ids=list(ids[part]),
                embeddings=embeddings[part],
                metadatas=[dict(m) for m in metadatas[part]],
            )

    def delete_vectors(
        self, tenant: Tenant, ids: Sequence[str], *, collection_name: str | None = None
    ) -> None:
        """Remove vectors by id; ids that are not there are ignored."""
        self._delete(
            tenant,
            collection_name,
            ids,
            self._max_batch,
            lambda part: {"ids": list(part)},
        )

    def delete_memories(
        self, tenant: Tenant, log_ids: Sequence[int], *, collection_name: str | None = None
    ) -> None:
        """Remove every vector (all chunks) of the given memories."""
        self._delete(
            tenant,
            collection_name,
            log_ids,
            1000,
            lambda part: {"where": {"log_id": {"$in": [int(i) for i in part]}}},
        )

    def _delete(
        self,
        tenant: Tenant,
        collection_name: str | None,
        items: Sequence[Any],
        batch: int,
        selection: Callable[[Sequence[Any]], dict[str, Any]],
    ) -> None:
        """Delete what ``selection`` names for each batch of ``items`` (no collection: nothing);
        in a shard's collection, only among the tenant's own vectors."""
        if not items:
            return
        collection = self.existing_collection(tenant, name=collection_name)
        if collection is None:
            return
        shared = is_shard_collection(collection.name)
        for part in _batches(len(items), batch):
            chosen = selection(items[part])
            if shared:
                chosen["where"] = _and({"tenant_key": tenant.key}, chosen.get("where"))
            self._call("delete", tenant, collection.delete, **chosen)

    def query(
        self,
        tenant: Tenant,
        model_id: str,
        query_vectors: np.ndarray,
        n_results: int,
        where: Mapping[str, Any] | None = None,
        *,
        with_metadata: bool = True,
    ) -> list[list[VectorHit]] | None:
        """Nearest vectors of the tenant for each query vector, or ``None`` if it has no collection.

        Tenant isolation: the collection is the tenant's own (its metadata is verified when it
        is opened). With ``with_metadata`` every returned vector's ``user_id``/``project_id``
        is checked against the tenant too. Without it (cheaper), hits carry only ids and
        similarities, and the caller must check each memory's tenant in Postgres, as search does
        when it loads rows. The tenant is not repeated inside Chroma's ``where`` of a tenant's
        own collection: it would make Chroma pre-filter the whole collection (docs/decisions/
        0016); in a shard's collection it is the filter that keeps the tenant to itself.
        """
        from chromadb.errors import NotFoundError

        include = ["distances", "metadatas"] if with_metadata else ["distances"]
        for attempt in (1, 2):
            collection = self._collection_for_query(tenant, model_id)
            if collection is None:
                return None
            if is_shard_collection(collection.name):
                chosen: dict[str, Any] | None = _and({"tenant_key": tenant.key}, where)
            else:
                chosen = dict(where) if where else None
            try:
                result = collection.query(
                    query_embeddings=query_vectors,
                    n_results=n_results,
                    where=chosen,
                    include=include,
                )
                break
            except NotFoundError:  # dropped since it was cached: look it up again
                self._query_collections.pop((tenant.key, tenant.shard, model_id), None)
                if attempt == 2:
                    return None
            except (VectorStoreUnavailable, ValueError):
                raise
            except Exception as exc:
                raise VectorStoreUnavailable(
                    f"Chroma query failed for tenant {tenant}: {exc}"
                ) from exc
        metadatas = result["metadatas"] if with_metadata else [None] * len(result["ids"])
        hits: list[list[VectorHit]] = []
        for ids, distances, metas in zip(
            result["ids"], result["distances"], metadatas, strict=True
        ):
            found: list[VectorHit] = []
            for index, (vid, dist) in enumerate(zip(ids, distances, strict=True)):
                log_id = log_id_of(vid)
                if log_id is None:
                    logger.warning("Chroma vector %r of tenant %s names no memory", vid, tenant)
                    continue
                meta = metas[index] if metas is not None else None
                if with_metadata and not (  # the tenant filter of every query (docstring)
                    meta
                    and meta.get("user_id") == tenant.user_id
                    and meta.get("project_id") == tenant.project_id
                ):
                    continue
                found.append(VectorHit(log_id, vid, 1.0 - float(dist), meta or {}))
            hits.append(found)
        return hits

    def _collection_for_query(self, tenant: Tenant, model_id: str) -> Any | None:
        key = (tenant.key, tenant.shard, model_id)
        collection = self._query_collections.get(key)
        if collection is None:
            collection = self.collection_for_model(tenant, model_id)
            if collection is None:
                return None
            self._verify(collection, tenant, model_id)
            self._query_collections[key] = collection
        return collection

    def vector_ids(self, tenant: Tenant, *, collection_name: str | None = None) -> set[str]:
        """Every vector id of the tenant in its collection (empty if there is none)."""
        collection = self.existing_collection(tenant, name=collection_name)
        if collection is None:
            return set()
        where = {"tenant_key": tenant.key} if is_shard_collection(collection.name) else None
        ids: set[str] = set()
        offset, page = 0, 5000
        while True:
            got = self._call(
                "get", tenant, collection.get, where=where, include=[], limit=page, offset=offset
            )
            ids.update(got["ids"])
            if len(got["ids"]) < page:
                return ids
            offset += page

    def get_vectors(
        self, tenant: Tenant, ids: Sequence[str], *, collection_name: str | None = None
    ) -> dict[str, np.ndarray]:
        """The stored vectors for ``ids`` that exist."""
        collection = self.existing_collection(tenant, name=collection_name)
        if collection is None or not ids:
            return {}
        where = {"tenant_key": tenant.key} if is_shard_collection(collection.name) else None
        got = self._call(
            "get", tenant, collection.get, ids=list(ids), where=where, include=["embeddings"]
        )
        return {
            vid: np.asarray(vec, dtype=np.float32)
            for vid, vec in zip(got["ids"], got["embeddings"], strict=True)
        }

    def shard_contents(
        self, shard: int, model_id: str, *, ids: Sequence[str] | None = None
    ) -> dict[str, tuple[str, np.ndarray | None]]:
        """A shard's collection of ``model_id``, all of it (or ``ids`` with their vectors): each
        vector id's ``tenant_key`` (and vector). One paged read for every tenant of the shard,
        for checks that would otherwise read it tenant by tenant."""
        name = shard_collection_name(shard, model_id)
        owner = Tenant("shard", name, shard)  # names the shard in errors
        collection = self.existing_collection(owner, name=name)
        if collection is None:
            return {}
        out: dict[str, tuple[str, np.ndarray | None]] = {}
        if ids is not None:
            got = self._call(
                "get", owner, collection.get, ids=list(ids), include=["metadatas", "embeddings"]
            )
            for vid, meta, vec in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True):
                out[vid] = ((meta or {}).get("tenant_key", ""), np.asarray(vec, dtype=np.float32))
            return out
        offset, page = 0, 5000
        while True:
            got = self._call(
                "get", owner, collection.get, include=["metadatas"], limit=page, offset=offset
            )
            for vid, meta in zip(got["ids"], got["metadatas"], strict=True):
                out[vid] = ((meta or {}).get("tenant_key", ""), None)
            if len(got["ids"]) < page:
                return out
            offset += page

    def tenant_collection_names(self, tenant: Tenant) -> list[str]:
        """Every collection that may hold the tenant's vectors: its own, any built aside for
        another model, and, in a shard, the shard's collections of every model."""
        collections = self._call("list collections", tenant, self.client.list_collections)
        live = tenant.collection_name
        shard_prefix = None if tenant.shard is None else shard_collection_prefix(tenant.shard)
        names = (c.name for c in collections)
        return sorted(
            n
            for n in names
            if n == live
            or n.startswith(f"{live}__")
            or (shard_prefix is not None and n.startswith(shard_prefix))
        )

    def _forget_query_collections(self, tenant: Tenant) -> None:
        for key in [k for k in self._query_collections if k[0] == tenant.key]:
            del self._query_collections[key]

    def drop_collection(self, tenant: Tenant, *, name: str | None = None) -> bool:
        """Delete the tenant's collection; return whether it existed. In a shard's collection
        only the tenant's own vectors go: the shard's other tenants keep theirs."""
        self._forget_query_collections(tenant)
        collection = self.existing_collection(tenant, name=name)
        if collection is None:
            return False
        if is_shard_collection(collection.name):
            self._call("delete", tenant, collection.delete, where={"tenant_key": tenant.key})
            return True
        self._call("delete collection", tenant, self.client.delete_collection, collection.name)
        return True
