"""Reads of the memories a LangGraph store wrote (memory_pipeline.integrations.langgraph).

Such a memory's ``raw_data`` holds ``{"langgraph": {"namespace": [...], "key", "value"}}``
(the namespace below the tenant); every query stays inside one tenant (``tenant_key`` index).
Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

_COLUMNS = "id, raw_data, created_at, updated_at"


def item_row(conn: psycopg.Connection, tenant_key: str, external_id: str) -> dict[str, Any] | None:
    """The memory of ``external_id`` in the tenant, or ``None``."""
    return conn.execute(
        f"SELECT {_COLUMNS} FROM memory_log WHERE tenant_key = %s AND external_id = %s",
        (tenant_key, external_id),
    ).fetchone()


def _under(prefix: Sequence[str]) -> tuple[str, list[Any]]:
    clauses = ["raw_data ? 'langgraph'"]
    params: list[Any] = []
    for i, label in enumerate(prefix):
        clauses.append(f"raw_data #>> '{{langgraph,namespace,{i}}}' = %s")
        params.append(label)
    return " AND ".join(clauses), params


def item_rows(
    conn: psycopg.Connection,
    tenant_key: str,
    prefix: Sequence[str],
    value_filter: dict[str, Any] | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """The tenant's items under ``prefix`` whose value contains ``value_filter``, newest first."""
    where, params = _under(prefix)
    if value_filter:
        where += " AND raw_data -> 'langgraph' -> 'value' @> %s"
        params.append(Jsonb(value_filter))
    return conn.execute(
        f"""SELECT {_COLUMNS} FROM memory_log WHERE tenant_key = %s AND {where}
            ORDER BY updated_at DESC, id DESC LIMIT %s OFFSET %s""",
        (tenant_key, *params, limit, offset),
    ).fetchall()


def namespaces(conn: psycopg.Connection, tenant_key: str) -> list[list[str]]:
    """The distinct namespaces (below the tenant) of the tenant's items."""
    rows = conn.execute(
        """SELECT DISTINCT raw_data -> 'langgraph' -> 'namespace' AS ns FROM memory_log
            WHERE tenant_key = %s AND raw_data ? 'langgraph'""",
        (tenant_key,),
    ).fetchall()
    return [list(r["ns"]) for r in rows]
