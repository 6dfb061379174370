"""Tombstones: deleted memories whose vectors have yet to leave Chroma.

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg


def take_tombstones(conn: psycopg.Connection, tenant_key: str) -> list[int]:
    """Lock the tenant's tombstones (``SKIP LOCKED``); return their memory ids."""
    rows = conn.execute(
        "SELECT log_id FROM memory_tombstone WHERE tenant_key = %s ORDER BY log_id "
        "FOR UPDATE SKIP LOCKED",
        (tenant_key,),
    ).fetchall()
    return [int(r["log_id"]) for r in rows]


def tenants_with_tombstones(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> set[str]:
    """Those of ``tenant_keys`` that have deletes waiting to reach Chroma."""
    rows = conn.execute(
        "SELECT DISTINCT tenant_key FROM memory_tombstone WHERE tenant_key = ANY(%s)",
        (list(tenant_keys),),
    ).fetchall()
    return {r["tenant_key"] for r in rows}


def clear_tombstones(conn: psycopg.Connection, log_ids: Sequence[int]) -> None:
    conn.execute("DELETE FROM memory_tombstone WHERE log_id = ANY(%s)", (list(log_ids),))
