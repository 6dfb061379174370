"""What the pipeline may work on, and claiming it: workable rows locked ``FOR UPDATE SKIP LOCKED``
so overlapping runs never share a row (docs/architecture.md, "Row lifecycle").

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from memory_pipeline.tenancy import Tenant

#: Rows the pipeline may work on now.
WORKABLE = "(status = 'pending' OR (status = 'failed' AND next_attempt_at <= now()))"


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """A row locked by this transaction for processing.

    ``raw_text`` is ``raw_data`` as the database prints it, decoded row by row by the caller:
    psycopg's jsonb loader would decode every row of the batch inside the claim, so one row
    too deeply nested for Python (``RecursionError``) would fail the whole claim.
    """

    id: int
    tenant_key: str
    raw_text: str
    raw_bytes: int
    created_at: datetime
    occurred_at: datetime
    occurred_at_explicit: bool
    attempts: int
    content_hash: str | None
    embedding_model: str | None
    chunk_count: int
    status: str


#: The columns of a :class:`ClaimedRow`.
_CLAIMED_COLUMNS = """id, tenant_key, raw_data::text AS raw_text,
                   octet_length(raw_data::text) AS raw_bytes, created_at, occurred_at,
                   occurred_at_explicit, attempts, content_hash, embedding_model, chunk_count,
                   status"""


def claim_workable_rows(
    conn: psycopg.Connection, tenant_key: str, limit: int, after_id: int = 0
) -> list[ClaimedRow]:
    """Lock up to ``limit`` workable rows of a tenant with ``id > after_id``, in id order.

    ``FOR UPDATE SKIP LOCKED``: rows locked by another transaction are skipped, so overlapping
    runs never share a row; ``after_id`` keeps one run from taking a row twice.
    """
    return claim_workable_rows_of_tenants(conn, [tenant_key], limit, (tenant_key, after_id))


def claim_workable_rows_of_tenants(
    conn: psycopg.Connection,
    tenant_keys: Sequence[str],
    limit: int,
    after: tuple[str, int] = ("", 0),
) -> list[ClaimedRow]:
    """Lock up to ``limit`` workable rows of the tenants (``FOR UPDATE SKIP LOCKED``).

    Rows come in (tenant, id) order, after the row ``after`` names: a batch holds whole tenants,
    one Chroma upsert each (docs/decisions/0014-claims-in-tenant-order.md).
    """
    rows = conn.execute(
        f"""SELECT {_CLAIMED_COLUMNS}
            FROM memory_log
            WHERE tenant_key = ANY(%s) AND {WORKABLE} AND (tenant_key, id) > (%s, %s)
            ORDER BY tenant_key, id
            LIMIT %s
            FOR UPDATE SKIP LOCKED""",
        (list(tenant_keys), after[0], after[1], limit),
    ).fetchall()
    return [ClaimedRow(**row) for row in rows]


def claim_rows_missing_model(
    conn: psycopg.Connection, tenant_key: str, model_id: str, limit: int, after_id: int = 0
) -> list[ClaimedRow]:
    """Lock embedded rows of a tenant that have no vectors of ``model_id`` yet (a model rollout)."""
    rows = conn.execute(
        f"""SELECT {_CLAIMED_COLUMNS}
           FROM memory_log m
           WHERE tenant_key = %s AND status = 'embedded' AND id > %s
             AND NOT EXISTS (SELECT 1 FROM memory_vector v
                             WHERE v.log_id = m.id AND v.embedding_model = %s)
           ORDER BY id
           LIMIT %s
           FOR UPDATE SKIP LOCKED""",
        (tenant_key, after_id, model_id, limit),
    ).fetchall()
    return [ClaimedRow(**row) for row in rows]


def claim_rows_lacking_chunks_of_model(
    conn: psycopg.Connection, tenant_key: str, model_id: str, limit: int, after_id: int = 0
) -> list[ClaimedRow]:
    """Lock embedded rows of a tenant whose vectors of ``model_id`` are not one per chunk: none
    yet, or some lost (the second stage's backfill and repair)."""
    rows = conn.execute(
        f"""SELECT {_CLAIMED_COLUMNS}
           FROM memory_log m
           WHERE tenant_key = %s AND status = 'embedded' AND id > %s
             AND (SELECT count(*) FROM memory_vector v
                  WHERE v.log_id = m.id AND v.embedding_model = %s) <> chunk_count
           ORDER BY id
           LIMIT %s
           FOR UPDATE SKIP LOCKED""",
        (tenant_key, after_id, model_id, limit),
    ).fetchall()
    return [ClaimedRow(**row) for row in rows]


@dataclass(frozen=True, slots=True)
class WorkableTenant:
    """One entry of :func:`workable_tenants`."""

    tenant: Tenant
    rows: int
    tombstones: int
    fingerprint: str


def workable_tenants(conn: psycopg.Connection) -> list[WorkableTenant]:
    """Tenants with work: workable rows or tombstones, with a fingerprint of that work.

    The fingerprint changes whenever the set of workable rows changes (new rows, updates,
    retries), so a run key built from it is never reused for different work.
    """
    rows = conn.execute(
        f"""WITH work AS (
                SELECT tenant_key, count(*) AS rows, max(id) AS max_id,
                       max(updated_at) AS last_change, sum(id) AS id_sum
                FROM memory_log WHERE {WORKABLE} GROUP BY tenant_key
            ), tomb AS (
                SELECT tenant_key, count(*) AS tombstones, max(log_id) AS max_tomb
                FROM memory_tombstone GROUP BY tenant_key
            )
            SELECT t.tenant_key, t.user_id, t.project_id, t.shard,
                   coalesce(w.rows, 0) AS rows, coalesce(tb.tombstones, 0) AS tombstones,
                   concat_ws(':', w.rows, w.max_id, w.id_sum,
                             extract(epoch FROM w.last_change), tb.tombstones, tb.max_tomb)
                       AS fingerprint
            FROM memory_tenant t
            LEFT JOIN work w USING (tenant_key)
            LEFT JOIN tomb tb USING (tenant_key)
            WHERE w.tenant_key IS NOT NULL OR tb.tenant_key IS NOT NULL
            ORDER BY t.created_at, t.tenant_key"""
    ).fetchall()
    return [
        WorkableTenant(
            Tenant(r["user_id"], r["project_id"], r["shard"]),
            int(r["rows"]),
            int(r["tombstones"]),
            r["fingerprint"],
        )
        for r in rows
    ]
