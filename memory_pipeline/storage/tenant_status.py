"""Queries on tenants as an operator sees them: who exists, each one's totals, rows worth a look.

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from memory_pipeline.storage import tenant_layout
from memory_pipeline.storage.claims import WORKABLE
from memory_pipeline.tenancy import Tenant, TenantLayout

#: The row states of DESIGN §2, in the order an operator reads them.
ROW_STATES = ("pending", "embedded", "skipped", "failed", "dead")


@dataclass(frozen=True)
class TenantTotals:
    """A tenant's rows by state, and its vectors of the model that serves its searches."""

    pending: int = 0
    embedded: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    vectors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ShardTotals:
    """A shard's tenants, and their rows by state and vectors, summed."""

    tenants: int = 0
    rows: TenantTotals = TenantTotals()


@dataclass(frozen=True)
class RowSample:
    """One memory shown to an operator: why it is skipped, failed or dead."""

    id: int
    tenant_key: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime


def all_tenants(conn: psycopg.Connection) -> list[Tenant]:
    """Every tenant with a record, oldest first (the order of their Dagster partitions)."""
    rows = conn.execute(
        "SELECT user_id, project_id, shard FROM memory_tenant ORDER BY created_at, tenant_key"
    ).fetchall()
    return [Tenant(r["user_id"], r["project_id"], r["shard"]) for r in rows]


def tenant_totals(
    conn: psycopg.Connection, tenant_keys: Sequence[str], model_id: str
) -> dict[str, TenantTotals]:
    """Each tenant's totals now, by key; vectors are those of the tenant's live model (else
    ``model_id``). Tenants without rows get zeros."""
    keys = list(tenant_keys)
    rows = conn.execute(
        """WITH states AS (
               SELECT tenant_key,
                      count(*) FILTER (WHERE status = 'pending')  AS pending,
                      count(*) FILTER (WHERE status = 'embedded') AS embedded,
                      count(*) FILTER (WHERE status = 'skipped')  AS skipped,
                      count(*) FILTER (WHERE status = 'failed')   AS failed,
                      count(*) FILTER (WHERE status = 'dead')     AS dead
               FROM memory_log WHERE tenant_key = ANY(%(keys)s) GROUP BY tenant_key
           ), vectors AS (
               SELECT v.tenant_key, count(*) AS vectors
               FROM memory_vector v
               JOIN memory_tenant t USING (tenant_key)
               WHERE v.tenant_key = ANY(%(keys)s)
                 AND v.embedding_model = coalesce(t.live_model, %(model)s)
               GROUP BY v.tenant_key
           )
           SELECT k AS tenant_key, s.pending, s.embedded, s.skipped, s.failed, s.dead, v.vectors
           FROM unnest(%(keys)s::text[]) AS k
           LEFT JOIN states s ON s.tenant_key = k
           LEFT JOIN vectors v ON v.tenant_key = k""",
        {"keys": keys, "model": model_id},
    ).fetchall()
    return {
        r["tenant_key"]: TenantTotals(
            **{name: int(r[name] or 0) for name in (*ROW_STATES, "vectors")}
        )
        for r in rows
    }


def row_samples(
    conn: psycopg.Connection,
    tenant_keys: Sequence[str],
    statuses: Sequence[str],
    *,
    limit: int,
    per_tenant: int | None = None,
) -> list[RowSample]:
    """At most ``limit`` rows of the tenants in ``statuses`` (and at most ``per_tenant`` of each
    tenant), most recently changed first."""
    rows = conn.execute(
        """SELECT id, tenant_key, status, attempts, last_error, updated_at FROM (
               SELECT id, tenant_key, status, attempts, last_error, updated_at,
                      row_number() OVER (PARTITION BY tenant_key
                                         ORDER BY updated_at DESC, id DESC) AS rank
               FROM memory_log WHERE tenant_key = ANY(%s) AND status = ANY(%s)
           ) ranked
           WHERE %s::int IS NULL OR rank <= %s
           ORDER BY updated_at DESC, id DESC LIMIT %s""",
        (list(tenant_keys), list(statuses), per_tenant, per_tenant, limit),
    ).fetchall()
    return [RowSample(**r) for r in rows]


def stuck_pending_samples(
    conn: psycopg.Connection, tenant_keys: Sequence[str], stuck_after: timedelta, limit: int
) -> list[RowSample]:
    """At most ``limit`` rows of the tenants pending since before ``now() - stuck_after``,
    oldest first."""
    rows = conn.execute(
        """SELECT id, tenant_key, status, attempts, last_error, updated_at FROM memory_log
           WHERE tenant_key = ANY(%s) AND status = 'pending' AND updated_at < now() - %s
           ORDER BY updated_at, id LIMIT %s""",
        (list(tenant_keys), stuck_after, limit),
    ).fetchall()
    return [RowSample(**r) for r in rows]


def workable_rows(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> int:
    """How many rows of the tenants a run would work on now (pending, or failed and due)."""
    row = conn.execute(
        f"SELECT count(*) AS n FROM memory_log WHERE tenant_key = ANY(%s) AND {WORKABLE}",
        (list(tenant_keys),),
    ).fetchone()
    return int(row["n"])


@dataclass(frozen=True)
class PendingAge:
    """A tenant's pending rows, those pending too long, and the oldest's age in seconds."""

    pending: int = 0
    stuck: int = 0
    oldest_seconds: float = 0.0


def pending_ages(
    conn: psycopg.Connection, tenant_keys: Sequence[str], stuck_after: timedelta
) -> dict[str, PendingAge]:
    """Each tenant's :class:`PendingAge` (rows pending since before ``now() - stuck_after`` are
    stuck), by key; tenants without pending rows get zeros."""
    keys = list(tenant_keys)
    rows = conn.execute(
        """SELECT tenant_key, count(*) AS pending,
                  count(*) FILTER (WHERE updated_at < now() - %s) AS stuck,
                  extract(epoch FROM now() - min(updated_at)) AS oldest_seconds
           FROM memory_log WHERE tenant_key = ANY(%s) AND status = 'pending'
           GROUP BY tenant_key""",
        (stuck_after, keys),
    ).fetchall()
    found = {
        r["tenant_key"]: PendingAge(int(r["pending"]), int(r["stuck"]), float(r["oldest_seconds"]))
        for r in rows
    }
    return {key: found.get(key, PendingAge()) for key in keys}


def tenants_of(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> dict[str, Tenant]:
    """The tenants recorded under ``tenant_keys``, placed, by key (unknown keys are left out)."""
    rows = conn.execute(
        "SELECT tenant_key, user_id, project_id, shard FROM memory_tenant "
        "WHERE tenant_key = ANY(%s)",
        (list(tenant_keys),),
    ).fetchall()
    return {r["tenant_key"]: Tenant(r["user_id"], r["project_id"], r["shard"]) for r in rows}


def status_counts(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per tenant: how many rows are in each state."""
    return conn.execute(
        """SELECT t.user_id, t.project_id, t.tenant_key,
                  count(*) FILTER (WHERE m.status = 'pending')  AS pending,
                  count(*) FILTER (WHERE m.status = 'embedded') AS embedded,
                  count(*) FILTER (WHERE m.status = 'skipped')  AS skipped,
                  count(*) FILTER (WHERE m.status = 'failed')   AS failed,
                  count(*) FILTER (WHERE m.status = 'dead')     AS dead
           FROM memory_tenant t JOIN memory_log m USING (tenant_key)
           GROUP BY t.user_id, t.project_id, t.tenant_key, t.created_at
           ORDER BY t.created_at, t.tenant_key"""
    ).fetchall()


def shard_totals(
    conn: psycopg.Connection, layout: TenantLayout, shard_numbers: Sequence[int], model_id: str
) -> dict[int, ShardTotals]:
    """Each shard's :class:`ShardTotals` now (its tenants' :func:`tenant_totals` summed)."""
    tenants = tenant_layout.tenants_of_shards(conn, layout, shard_numbers)
    per_tenant = tenant_totals(conn, [t.key for t in tenants], model_id)
    out: dict[int, ShardTotals] = {}
    for shard in shard_numbers:
        mine = [per_tenant[t.key] for t in tenants if layout.shard_of(t.key) == shard]
        summed = {name: sum(getattr(t, name) for t in mine) for name in TenantTotals().as_dict()}
        out[shard] = ShardTotals(len(mine), TenantTotals(**summed))
    return out
