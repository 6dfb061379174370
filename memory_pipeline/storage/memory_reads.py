"""Reads of single memories: a row's public fields, ids by external id, states, vector ids.

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

#: Columns a caller of get_memory_log sees (the CLI's ``get``).
PUBLIC_COLUMNS = (
    "id, user_id, project_id, tenant_key, external_id, status, attempts, last_error, "
    "next_attempt_at, memory_type, occurred_at, created_at, updated_at, embedded_at, "
    "embedding_model, content_hash, chunk_count, text_truncated, search_text, raw_data"
)


def get_memory_log(conn: psycopg.Connection, log_id: int) -> dict[str, Any] | None:
    """The row's public fields, or ``None``."""
    return conn.execute(
        f"SELECT {PUBLIC_COLUMNS} FROM memory_log WHERE id = %s", (log_id,)
    ).fetchone()


def ids_by_external_id(conn: psycopg.Connection, tenant_key: str) -> dict[str, int]:
    """The tenant's row ids by external id."""
    rows = conn.execute(
        "SELECT id, external_id FROM memory_log WHERE tenant_key = %s AND external_id IS NOT NULL",
        (tenant_key,),
    ).fetchall()
    return {r["external_id"]: int(r["id"]) for r in rows}


def states_of(conn: psycopg.Connection, log_ids: Sequence[int]) -> dict[int, str]:
    """The ``status`` of each of ``log_ids`` that exists."""
    rows = conn.execute(
        "SELECT id, status FROM memory_log WHERE id = ANY(%s)", (list(log_ids),)
    ).fetchall()
    return {int(r["id"]): r["status"] for r in rows}


def vector_ids_of_tenant(conn: psycopg.Connection, tenant_key: str, model_id: str) -> set[str]:
    """The tenant's vector ids of ``model_id`` in Postgres."""
    rows = conn.execute(
        "SELECT vector_id FROM memory_vector WHERE tenant_key = %s AND embedding_model = %s",
        (tenant_key, model_id),
    ).fetchall()
    return {r["vector_id"] for r in rows}


def vector_models_of_tenant(conn: psycopg.Connection, tenant_key: str) -> list[str]:
    """The models the tenant has vectors of in memory_vector (two during a rollout)."""
    rows = conn.execute(
        "SELECT DISTINCT embedding_model FROM memory_vector WHERE tenant_key = %s ORDER BY 1",
        (tenant_key,),
    ).fetchall()
    return [r["embedding_model"] for r in rows]


def vector_ids_of_tenants(
    conn: psycopg.Connection, tenant_keys: Sequence[str], model_id: str
) -> dict[str, set[str]]:
    """:func:`vector_ids_of_tenant` for many tenants in one query (every key present)."""
    rows = conn.execute(
        "SELECT tenant_key, vector_id FROM memory_vector "
        "WHERE tenant_key = ANY(%s) AND embedding_model = %s",
        (list(tenant_keys), model_id),
    ).fetchall()
    out: dict[str, set[str]] = {key: set() for key in tenant_keys}
    for r in rows:
        out[r["tenant_key"]].add(r["vector_id"])
    return out
