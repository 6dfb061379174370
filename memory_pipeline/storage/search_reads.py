"""The SQL a search runs (besides keyword scoring, in :mod:`memory_pipeline.keyword_index`).

Every function takes an open connection (search's is in autocommit mode: each statement one
round trip, docs/decisions/0007-autocommit-search-connection.md) and a tenant key that every
statement filters on. ``where`` is a condition over ``memory_log m``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

#: pgvector's HNSW candidate list (hnsw.ef_search); iterative scans go past it when a filter
#: or several chunks per memory leave too few rows.
PGVECTOR_EF_SEARCH = 200


@dataclass(frozen=True, slots=True)
class KnownTenant:
    """A tenant search found, the model whose vectors serve its searches (``None``: the
    configured one), and the shard whose collections hold them (``None``: its own)."""

    live_model: str | None
    shard: int | None = None


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One chunk vector near a query: its memory and cosine similarity."""

    log_id: int
    similarity: float


@dataclass(frozen=True, slots=True)
class CandidateFacts:
    """What ranking needs to know of a candidate memory: its type and time, and, when asked
    for, who speaks in it (a conversation turn) and whether its own words mention a time."""

    memory_type: str
    occurred_at: datetime
    speaker: str | None = None
    mentions_time: bool = False


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """The fields of a memory that a search result carries."""

    id: int
    external_id: str | None
    search_text: str
    memory_type: str
    occurred_at: datetime
    created_at: datetime
    raw_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MatchedChunk:
    """A memory's chunk most similar to a query."""

    chunk_index: int
    similarity: float
    text: str


def _vector_cast(vector: np.ndarray) -> sql.Composable:
    # The per-model HNSW index is on embedding::vector(dim) (storage.vector_indexes).
    return sql.SQL("vector({})").format(sql.SQL(str(int(vector.shape[0]))))


def known_tenant(conn: psycopg.Connection, tenant_key: str) -> KnownTenant | None:
    """The tenant, if any memory of it was ever written."""
    row = conn.execute(
        "SELECT live_model, shard FROM memory_tenant WHERE tenant_key = %s", (tenant_key,)
    ).fetchone()
    return KnownTenant(row["live_model"], row["shard"]) if row else None


def _vector_source(where: sql.Composable | None) -> sql.Composable:
    """``memory_vector v``, joined to the tenant's embedded memories only under a filter on
    memory columns (without one, no join per candidate: row status and filters are applied
    again when rows are loaded)."""
    if where is None:
        return sql.SQL("memory_vector v")
    return sql.SQL(
        "memory_vector v JOIN memory_log m ON m.id = v.log_id "
        "AND m.tenant_key = %(tenant)s AND m.status = 'embedded' AND {}"
    ).format(where)


def pgvector_nearest(
    conn: psycopg.Connection,
    tenant_key: str,
    model_id: str,
    vector: np.ndarray,
    n: int,
    where: sql.Composable | None,
) -> list[VectorHit]:
    """The tenant's ``n`` chunk vectors nearest ``vector`` (HNSW, iterative scan), best first."""
    cast, source = _vector_cast(vector), _vector_source(where)
    statement = sql.SQL(
        """SELECT log_id, similarity FROM (
               SELECT v.log_id, 1 - (v.embedding::{cast} <=> %(q)s::{cast}) AS similarity
               FROM {source}
               WHERE v.embedding_model = %(model)s AND v.tenant_key = %(tenant)s
               ORDER BY v.embedding::{cast} <=> %(q)s::{cast}
               LIMIT %(n)s) AS hits
           ORDER BY similarity DESC"""
    ).format(cast=cast, source=source)
    with conn.transaction():  # the settings hold for this transaction only
        # Under a tenant filter plain HNSW returns almost nothing; iterative scans keep its
        # recall (DESIGN §7). force_custom_plan: a generic plan (psycopg prepares a statement
        # after 5 runs) cannot match the per-model partial HNSW index and scans exactly.
        conn.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.ef_search', %s, true), "
            "set_config('plan_cache_mode', 'force_custom_plan', true)",
            (str(PGVECTOR_EF_SEARCH),),
        )
        rows = conn.execute(
            statement, {"q": vector, "model": model_id, "tenant": tenant_key, "n": n}
        ).fetchall()
    return [VectorHit(int(r["log_id"]), float(r["similarity"])) for r in rows]


def tenant_vector_count(conn: psycopg.Connection, tenant_key: str, model_id: str, cap: int) -> int:
    """How many chunk vectors of ``model_id`` the tenant holds, counted no further than
    ``cap`` (an index-only scan of at most ``cap`` entries)."""
    row = conn.execute(
        """SELECT count(*) AS n FROM (
               SELECT 1 FROM memory_vector
               WHERE tenant_key = %s AND embedding_model = %s LIMIT %s) AS capped""",
        (tenant_key, model_id, cap),
    ).fetchone()
    return int(row["n"])


def exact_nearest(
    conn: psycopg.Connection,
    tenant_key: str,
    model_id: str,
    vector: np.ndarray,
    n: int,
    where: sql.Composable | None,
) -> list[VectorHit]:
    """The tenant's ``n`` chunk vectors nearest ``vector`` by comparing every one of them: for
    small tenants, whose rows the tenant index finds at once (docs/decisions/0204)."""
    cast, source = _vector_cast(vector), _vector_source(where)
    # MATERIALIZED: the tenant's rows are read first, so the planner cannot pick the HNSW
    # index, whose scan under a one-tenant filter is approximate.
    statement = sql.SQL(
        """WITH tenant_vectors AS MATERIALIZED (
               SELECT v.log_id, v.embedding FROM {source}
               WHERE v.embedding_model = %(model)s AND v.tenant_key = %(tenant)s)
           SELECT log_id, 1 - (embedding::{cast} <=> %(q)s::{cast}) AS similarity
           FROM tenant_vectors
           ORDER BY similarity DESC, log_id
           LIMIT %(n)s"""
    ).format(cast=cast, source=source)
    rows = conn.execute(
        statement, {"q": vector, "model": model_id, "tenant": tenant_key, "n": n}
    ).fetchall()
    return [VectorHit(int(r["log_id"]), float(r["similarity"])) for r in rows]


def best_chunks(
    conn: psycopg.Connection,
    tenant_key: str,
    model_id: str,
    vector: np.ndarray,
    log_ids: Collection[int],
    *,
    with_text: bool = True,
) -> dict[int, MatchedChunk]:
    """Each memory's chunk most similar to ``vector`` (its cosine similarity is the memory's);
    the chunk's text only ``with_text`` (ranking needs the similarity alone)."""
    cast = _vector_cast(vector)
    statement = sql.SQL(
        """SELECT DISTINCT ON (log_id) log_id, chunk_index{text},
                  1 - (embedding::{cast} <=> %(q)s::{cast}) AS similarity
           FROM memory_vector
           WHERE log_id = ANY(%(ids)s) AND tenant_key = %(tenant)s
             AND embedding_model = %(model)s
           ORDER BY log_id, similarity DESC, chunk_index"""
    ).format(cast=cast, text=sql.SQL(", chunk_text" if with_text else ""))
    rows = conn.execute(
        statement, {"q": vector, "ids": list(log_ids), "tenant": tenant_key, "model": model_id}
    ).fetchall()
    return {
        int(r["log_id"]): MatchedChunk(
            int(r["chunk_index"]), float(r["similarity"]), r.get("chunk_text") or ""
        )
        for r in rows
    }


#: Characters of a memory's text read for its cues (its speaker, a time it mentions).
CUE_TEXT_CHARS = 1000
# A conversation turn's text is "[day] speaker: words" (memory_pipeline.extraction.conversation).
_SPEAKER_SQL = r"substring(left(m.search_text, 200) from '^(?:\[[^]]*\] )?([^:\n]{1,80}): ')"
_OWN_WORDS_SQL = r"regexp_replace(left(m.search_text, %(chars)s), '^\[[^]]*\]\s*', '')"


def candidate_facts(
    conn: psycopg.Connection,
    tenant_key: str,
    log_ids: Collection[int],
    where: sql.Composable | None,
    *,
    speakers: bool = False,
    time_pattern: str | None = None,
) -> dict[int, CandidateFacts]:
    """What ranking needs of the returnable memories among ``log_ids``.

    Returnable: the tenant's own (by ``tenant_key`` in Postgres, whatever a vector store
    said), embedded, and matching ``where``. With ``speakers`` the facts also say who speaks in
    each conversation turn; with ``time_pattern`` (a case-insensitive Postgres regular
    expression) whether a memory's own words (its first :data:`CUE_TEXT_CHARS`) match it.
    """
    if not log_ids:
        return {}
    columns = []
    if speakers:
        columns.append(
            sql.SQL(
                "CASE WHEN m.memory_type = 'conversation_turn' THEN {speaker} END AS speaker"
            ).format(speaker=sql.SQL(_SPEAKER_SQL))
        )
    if time_pattern is not None:
        columns.append(
            sql.SQL("{own_words} ~* %(time)s AS mentions_time").format(
                own_words=sql.SQL(_OWN_WORDS_SQL)
            )
        )
    cues = sql.SQL("").join(sql.SQL(", ") + column for column in columns)
    statement = sql.SQL(
        """SELECT m.id, m.memory_type, m.occurred_at{cues} FROM memory_log m
           WHERE m.id = ANY(%(ids)s) AND m.tenant_key = %(tenant)s AND m.status = 'embedded'
             AND {condition}"""
    ).format(cues=cues, condition=where if where is not None else sql.SQL("true"))
    rows = conn.execute(
        statement,
        {
            "ids": list(log_ids),
            "tenant": tenant_key,
            "time": time_pattern,
            "chars": CUE_TEXT_CHARS,
        },
    ).fetchall()
    return {
        int(r["id"]): CandidateFacts(
            r["memory_type"],
            r["occurred_at"],
            (r.get("speaker") or "").strip() or None,
            bool(r.get("mentions_time")),
        )
        for r in rows
    }


def adjacent_memories(
    conn: psycopg.Connection,
    tenant_key: str,
    log_ids: Collection[int],
    memory_type: str,
    max_gap_seconds: float,
    reach: int = 1,
) -> dict[int, list[int]]:
    """For each memory of ``memory_type`` in ``log_ids``: the ones written just before and after.

    "Just before/after" is the tenant's ``reach`` previous and next embedded memories by id
    (write order), those of ``memory_type`` too that occurred within ``max_gap_seconds`` of it.
    """
    if not log_ids:
        return {}
    statement = """
        SELECT c.id AS log_id, nb.id AS neighbour_id
        FROM memory_log c
        CROSS JOIN LATERAL (
            (SELECT p.id, p.memory_type, p.occurred_at FROM memory_log p
             WHERE p.tenant_key = c.tenant_key AND p.id < c.id AND p.status = 'embedded'
             ORDER BY p.id DESC LIMIT %(reach)s)
            UNION ALL
            (SELECT s.id, s.memory_type, s.occurred_at FROM memory_log s
             WHERE s.tenant_key = c.tenant_key AND s.id > c.id AND s.status = 'embedded'
             ORDER BY s.id LIMIT %(reach)s)
        ) AS nb
        WHERE c.id = ANY(%(ids)s) AND c.tenant_key = %(tenant)s AND c.status = 'embedded'
          AND c.memory_type = %(type)s AND nb.memory_type = %(type)s
          AND abs(extract(epoch FROM nb.occurred_at - c.occurred_at)) <= %(gap)s"""
    rows = conn.execute(
        statement,
        {
            "ids": list(log_ids),
            "tenant": tenant_key,
            "type": memory_type,
            "gap": max_gap_seconds,
            "reach": reach,
        },
    ).fetchall()
    neighbours: dict[int, list[int]] = {}
    for r in rows:
        neighbours.setdefault(int(r["log_id"]), []).append(int(r["neighbour_id"]))
    return neighbours


def memory_rows(
    conn: psycopg.Connection, tenant_key: str, log_ids: Collection[int]
) -> dict[int, MemoryRow]:
    """The memories to return (still the tenant's and embedded)."""
    if not log_ids:
        return {}
    rows = conn.execute(
        """SELECT m.id, m.external_id, m.search_text, m.memory_type, m.occurred_at,
                  m.created_at, m.raw_data
           FROM memory_log m
           WHERE m.id = ANY(%s) AND m.tenant_key = %s AND m.status = 'embedded'""",
        (list(log_ids), tenant_key),
    ).fetchall()
    return {
        int(r["id"]): MemoryRow(
            id=int(r["id"]),
            external_id=r["external_id"],
            search_text=r["search_text"] or "",
            memory_type=r["memory_type"],
            occurred_at=r["occurred_at"],
            created_at=r["created_at"],
            raw_data=r["raw_data"],
        )
        for r in rows
    }
