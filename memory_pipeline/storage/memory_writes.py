"""The writes an application makes to memory_log: insert, replace ``raw_data``, delete, retry,
purge a tenant.

Every function takes an open psycopg connection; the caller owns the transaction. Triggers
(``sql/``) do the rest: a new or changed row is ``pending``, a deleted one leaves a tombstone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memory_pipeline.keyword_index.storage import delete_tenant_term_data
from memory_pipeline.tenancy import Tenant


def insert_memory_log(
    conn: psycopg.Connection,
    tenant: Tenant,
    raw_data: dict[str, Any],
    *,
    external_id: str | None = None,
    occurred_at: datetime | None = None,
) -> tuple[int, bool]:
    """Insert a pending row; return ``(id, inserted)``.

    A repeated ``(tenant, external_id)`` inserts nothing and returns the existing id.
    """
    row = conn.execute(
        """INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data, external_id,
                                   occurred_at, occurred_at_explicit)
           VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s)
           ON CONFLICT (tenant_key, external_id) WHERE external_id IS NOT NULL DO NOTHING
           RETURNING id""",
        (
            tenant.user_id,
            tenant.project_id,
            tenant.key,
            Jsonb(raw_data),
            external_id,
            occurred_at,
            occurred_at is not None,
        ),
    ).fetchone()
    if row is not None:
        return int(row["id"]), True
    existing = conn.execute(
        "SELECT id FROM memory_log WHERE tenant_key = %s AND external_id = %s",
        (tenant.key, external_id),
    ).fetchone()
    if existing is None:  # deleted between the two statements
        raise RuntimeError(f"memory with external_id {external_id!r} of tenant {tenant} vanished")
    return int(existing["id"]), False


@dataclass(frozen=True, slots=True)
class NewMemoryRow:
    """A validated memory to insert (:func:`insert_memory_logs`)."""

    tenant: Tenant
    raw_data: dict[str, Any]
    external_id: str | None = None
    occurred_at: datetime | None = None


def insert_memory_logs(
    conn: psycopg.Connection, rows: Sequence[NewMemoryRow]
) -> list[tuple[int, bool]]:
    """Insert pending rows in one statement; ``(id, inserted)`` for each, in order.

    A ``(tenant, external_id)`` already stored, or repeated earlier in ``rows``, inserts nothing
    and gets the existing id. Ids are drawn first and inserted explicitly, so each result is
    matched to its row without relying on the order of ``RETURNING``. The arrays travel in
    binary, so no JSON document is escaped as text.
    """
    if not rows:
        return []
    ids = [
        int(r["id"])
        for r in conn.execute(
            "SELECT nextval(pg_get_serial_sequence('memory_log', 'id')) AS id "
            "FROM generate_series(1, %s)",
            (len(rows),),
        )
    ]
    inserted = {
        int(r["id"])
        for r in conn.execute(
            """INSERT INTO memory_log (id, user_id, project_id, tenant_key, raw_data, external_id,
                                       occurred_at, occurred_at_explicit)
               OVERRIDING SYSTEM VALUE
               SELECT t.id, t.user_id, t.project_id, t.tenant_key, t.raw_data, t.external_id,
                      coalesce(t.occurred_at, now()), t.occurred_at IS NOT NULL
               FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::jsonb[],
                           %b::text[], %b::timestamptz[])
                    WITH ORDINALITY
                    AS t(id, user_id, project_id, tenant_key, raw_data, external_id, occurred_at,
                         ord)
               ORDER BY t.ord
               ON CONFLICT (tenant_key, external_id) WHERE external_id IS NOT NULL DO NOTHING
               RETURNING id""",
            (
                ids,
                [r.tenant.user_id for r in rows],
                [r.tenant.project_id for r in rows],
                [r.tenant.key for r in rows],
                [Jsonb(r.raw_data) for r in rows],
                [r.external_id for r in rows],
                [r.occurred_at for r in rows],
            ),
        )
    }
    repeats = [(i, r) for i, r in enumerate(rows) if ids[i] not in inserted]
    existing: dict[tuple[str, str], int] = {}
    if repeats:
        found = conn.execute(
            """SELECT m.id, m.tenant_key, m.external_id
               FROM unnest(%s::text[], %s::text[]) AS t(tenant_key, external_id)
               JOIN memory_log m USING (tenant_key, external_id)""",
            ([r.tenant.key for _, r in repeats], [r.external_id for _, r in repeats]),
        )
        existing = {(f["tenant_key"], f["external_id"]): int(f["id"]) for f in found}
    results = [(log_id, True) for log_id in ids]
    for i, r in repeats:
        log_id = existing.get((r.tenant.key, r.external_id or ""))
        if log_id is None:  # deleted between the two statements
            raise RuntimeError(
                f"memory with external_id {r.external_id!r} of tenant {r.tenant} vanished"
            )
        results[i] = (log_id, False)
    return results


def copy_pending_rows(
    conn: psycopg.Connection, rows: Iterable[tuple[Tenant, dict[str, Any], str | None]]
) -> int:
    """COPY ``(tenant, raw_data, external_id)`` rows in as ``pending``; return how many.

    The fast path for many rows (seeding, benchmarks): the triggers run as for an INSERT, but a
    repeated external id is an error, not a no-op. The caller owns the transaction.
    """
    count = 0
    with (
        conn.cursor() as cur,
        cur.copy("COPY memory_log (user_id, project_id, raw_data, external_id) FROM STDIN") as copy,
    ):
        for tenant, raw_data, external_id in rows:
            copy.write_row((tenant.user_id, tenant.project_id, Jsonb(raw_data), external_id))
            count += 1
    return count


def update_raw_data(conn: psycopg.Connection, log_id: int, raw_data: dict[str, Any]) -> bool:
    """Replace ``raw_data`` (the trigger puts the row back to pending); return whether it existed."""
    cur = conn.execute(
        "UPDATE memory_log SET raw_data = %s WHERE id = %s", (Jsonb(raw_data), log_id)
    )
    return cur.rowcount > 0


def delete_memory_log(conn: psycopg.Connection, log_id: int) -> bool:
    """Delete the row (the trigger records a tombstone); return whether it existed."""
    return conn.execute("DELETE FROM memory_log WHERE id = %s", (log_id,)).rowcount > 0


def reset_for_retry(conn: psycopg.Connection, tenant_key: str | None = None) -> int:
    """Put ``failed`` and ``dead`` rows (of one tenant, or all) back to pending; return the count."""
    cur = conn.execute(
        """UPDATE memory_log SET status = 'pending', attempts = 0, next_attempt_at = NULL
           WHERE status IN ('failed', 'dead') AND (%s::text IS NULL OR tenant_key = %s)""",
        (tenant_key, tenant_key),
    )
    return cur.rowcount


def purge_tenant_rows(conn: psycopg.Connection, tenant_key: str) -> int:
    """Delete every row, vector, tombstone, keyword statistic and the tenant record of one
    tenant; return rows deleted."""
    deleted = conn.execute("DELETE FROM memory_log WHERE tenant_key = %s", (tenant_key,)).rowcount
    conn.execute("DELETE FROM memory_tombstone WHERE tenant_key = %s", (tenant_key,))
    conn.execute("DELETE FROM memory_vector WHERE tenant_key = %s", (tenant_key,))
    delete_tenant_term_data(conn, tenant_key)
    conn.execute("DELETE FROM memory_tenant WHERE tenant_key = %s", (tenant_key,))
    return deleted
