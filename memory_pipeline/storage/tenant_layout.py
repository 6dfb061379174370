"""The home's tenant layout: per-tenant partitions and collections, or tenant shards
(docs/decisions/0203-tenant-shards.md), and where each tenant's vectors live.

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from memory_pipeline.storage.claims import WORKABLE
from memory_pipeline.tenancy import Tenant, TenantLayout


def read_layout(conn: psycopg.Connection) -> TenantLayout:
    """The home's layout (a home migrated before shards existed is per tenant)."""
    row = conn.execute("SELECT shards, sharded_at FROM tenant_layout").fetchone()
    return TenantLayout(row["shards"], row["sharded_at"]) if row else TenantLayout()


def shard_home(conn: psycopg.Connection, shards: int) -> TenantLayout:
    """Make the home sharded with ``shards`` shards, once: a sharded home keeps its count (its
    tenants' collections are named by it), so a later call returns the layout unchanged."""
    if shards < 1:
        raise ValueError(f"a home needs at least one shard, not {shards}")
    conn.execute(
        "UPDATE tenant_layout SET shards = %s, sharded_at = now() WHERE shards IS NULL", (shards,)
    )
    return read_layout(conn)


def ensure_layout(conn: psycopg.Connection, *, shards: int, after_tenants: int) -> TenantLayout:
    """The home's layout, sharding it first when it holds more than ``after_tenants`` tenants.

    Costs one small read when the home is sharded, and at most ``after_tenants + 1`` index
    entries when it is not.
    """
    layout = read_layout(conn)
    if layout.sharded:
        return layout
    over = conn.execute(
        "SELECT count(*) > %s AS over FROM (SELECT 1 FROM memory_tenant LIMIT %s) AS first_tenants",
        (after_tenants, after_tenants + 1),
    ).fetchone()["over"]
    return shard_home(conn, shards) if over else layout


def placed(conn: psycopg.Connection, tenants: Sequence[Tenant]) -> list[Tenant]:
    """``tenants`` with the placement of their vectors read from Postgres (see ``Tenant``)."""
    if not tenants:
        return []
    rows = conn.execute(
        "SELECT tenant_key, shard FROM memory_tenant WHERE tenant_key = ANY(%s)",
        ([t.key for t in tenants],),
    ).fetchall()
    shards = {r["tenant_key"]: r["shard"] for r in rows}
    return [t.placed(shards.get(t.key)) for t in tenants]


def unplaced_tenants(
    conn: psycopg.Connection, layout: TenantLayout, tenant_keys: Sequence[str]
) -> list[str]:
    """Which of ``tenant_keys`` still keep their vectors in their own collection although the
    home is sharded (their shard's next run moves them)."""
    if not layout.sharded or not tenant_keys:
        return []
    rows = conn.execute(
        "SELECT tenant_key FROM memory_tenant WHERE shard IS NULL AND tenant_key = ANY(%s)",
        (list(tenant_keys),),
    ).fetchall()
    return [r["tenant_key"] for r in rows]


def find_tenants(
    conn: psycopg.Connection, user_id: str | None, project_id: str | None, limit: int
) -> list[Tenant]:
    """At most ``limit`` tenants of ``user_id`` and/or ``project_id`` (``None``: any), placed,
    oldest first (indexed on either id, so a lookup stays cheap among millions)."""
    rows = conn.execute(
        """SELECT user_id, project_id, shard FROM memory_tenant
           WHERE (%(user)s::text IS NULL OR user_id = %(user)s)
             AND (%(project)s::text IS NULL OR project_id = %(project)s)
           ORDER BY created_at, tenant_key LIMIT %(limit)s""",
        {"user": user_id, "project": project_id, "limit": limit},
    ).fetchall()
    return [Tenant(r["user_id"], r["project_id"], r["shard"]) for r in rows]


#: Tenants placed per statement: each takes its advisory lock, and Postgres' lock table is shared.
PLACE_CHUNK = 500


def place_tenants_without_vectors(
    conn: psycopg.Connection, layout: TenantLayout, tenant_keys: Sequence[str]
) -> int:
    """Put the unplaced tenants among ``tenant_keys`` that have no vectors yet straight into
    their shards (nothing to move); return how many. A tenant whose lock another transaction
    holds (a run writing its first vectors) is left for a move. ``conn`` is in autocommit
    mode: each chunk is its own transaction, so its locks go when it commits."""
    if not conn.autocommit:
        raise ValueError("place_tenants_without_vectors needs an autocommit connection")
    if layout.shards is None:
        return 0
    placed_count = 0
    keys = list(tenant_keys)
    for start in range(0, len(keys), PLACE_CHUNK):
        with conn.transaction():
            placed_count += conn.execute(
                """UPDATE memory_tenant t
                   SET shard = memory_pipeline_tenant_shard(t.tenant_key, %(shards)s)
                   WHERE t.tenant_key = ANY(%(keys)s) AND t.shard IS NULL
                     AND NOT EXISTS (SELECT 1 FROM memory_vector v
                                     WHERE v.tenant_key = t.tenant_key)
                     AND pg_try_advisory_xact_lock(hashtextextended('tenant:' || t.tenant_key, 0))""",
                {"shards": layout.shards, "keys": keys[start : start + PLACE_CHUNK]},
            ).rowcount
    return placed_count


def tenants_to_move(conn: psycopg.Connection) -> list[Tenant]:
    """Every tenant still in its own collection (of a sharded home: the moves left to do)."""
    rows = conn.execute(
        "SELECT user_id, project_id FROM memory_tenant WHERE shard IS NULL ORDER BY tenant_key"
    ).fetchall()
    return [Tenant(r["user_id"], r["project_id"]) for r in rows]


def set_shard(conn: psycopg.Connection, tenant_key: str, shard: int) -> None:
    """Record that the tenant's vectors now live in ``shard``'s collections."""
    conn.execute("UPDATE memory_tenant SET shard = %s WHERE tenant_key = %s", (shard, tenant_key))


#: Tenants ``t`` of the shards ``%(numbers)s`` of ``%(shards)s``: those moved there by the index
#: on ``shard``, those still to move by the partial index of unplaced tenants.
_IN_SHARDS = """(t.shard = ANY(%(numbers)s)
    OR (t.shard IS NULL
        AND memory_pipeline_tenant_shard(t.tenant_key, %(shards)s) = ANY(%(numbers)s)))"""


@dataclass(frozen=True, slots=True)
class ShardWork:
    """One shard with work: its tenants' workable rows, tombstones and vectors still to move,
    and a fingerprint of that work (it changes whenever the work changes)."""

    shard: int
    rows: int
    tombstones: int
    moves: int
    fingerprint: str

    @property
    def size(self) -> int:
        return self.rows + self.tombstones + self.moves


def shards_with_work(conn: psycopg.Connection, shards: int) -> list[ShardWork]:
    """The shards whose tenants have workable rows, tombstones or vectors to move.

    Reads only the workable rows' index, the tombstones and the unplaced tenants: its cost
    follows the work, not the number of idle tenants.
    """
    rows = conn.execute(
        f"""WITH work AS (
                SELECT tenant_key, count(*) AS rows, max(id) AS max_id, sum(id) AS id_sum,
                       max(updated_at) AS last_change
                FROM memory_log WHERE {WORKABLE} GROUP BY tenant_key
            ), tomb AS (
                SELECT tenant_key, count(*) AS tombstones, max(log_id) AS max_tomb
                FROM memory_tombstone GROUP BY tenant_key
            ), moves AS (
                SELECT tenant_key, 1 AS moves FROM memory_tenant WHERE shard IS NULL
            ), tenants AS (
                SELECT tenant_key, coalesce(w.rows, 0) AS rows,
                       coalesce(tb.tombstones, 0) AS tombstones, coalesce(mv.moves, 0) AS moves,
                       concat_ws(':', tenant_key, w.rows, w.max_id, w.id_sum,
                                 extract(epoch FROM w.last_change), tb.tombstones, tb.max_tomb,
                                 mv.moves) AS fingerprint
                FROM work w FULL JOIN tomb tb USING (tenant_key) FULL JOIN moves mv USING (tenant_key)
            )
            SELECT memory_pipeline_tenant_shard(tenant_key, %(shards)s) AS shard,
                   sum(rows)::bigint AS rows, sum(tombstones)::bigint AS tombstones,
                   sum(moves)::bigint AS moves,
                   md5(string_agg(fingerprint, '|' ORDER BY tenant_key)) AS fingerprint
            FROM tenants GROUP BY 1 ORDER BY 1""",
        {"shards": shards},
    ).fetchall()
    return [
        ShardWork(
            int(r["shard"]), int(r["rows"]), int(r["tombstones"]), int(r["moves"]), r["fingerprint"]
        )
        for r in rows
    ]


def tenants_of_shards(
    conn: psycopg.Connection, layout: TenantLayout, shard_numbers: Sequence[int]
) -> list[Tenant]:
    """Every tenant of ``shard_numbers`` (moved there or not yet), placed, in key order."""
    if layout.shards is None or not shard_numbers:
        return []
    rows = conn.execute(
        f"""SELECT user_id, project_id, shard FROM memory_tenant t WHERE {_IN_SHARDS}
            ORDER BY tenant_key""",
        {"shards": layout.shards, "numbers": list(shard_numbers)},
    ).fetchall()
    return [Tenant(r["user_id"], r["project_id"], r["shard"]) for r in rows]


def tenants_with_work(
    conn: psycopg.Connection, layout: TenantLayout, shard_numbers: Sequence[int], model_id: str
) -> list[Tenant]:
    """The tenants of ``shard_numbers`` that a run has something to do for: workable rows,
    tombstones, vectors still to move, or a live model other than ``model_id`` (a rollout);
    placed, in tenant-key order."""
    if layout.shards is None or not shard_numbers:
        return []
    rows = conn.execute(
        f"""SELECT t.tenant_key, t.user_id, t.project_id, t.shard FROM memory_tenant t
            WHERE {_IN_SHARDS}
              AND (t.shard IS NULL
                   OR t.live_model <> %(model)s
                   OR EXISTS (SELECT 1 FROM memory_log m
                              WHERE m.tenant_key = t.tenant_key AND {WORKABLE})
                   OR EXISTS (SELECT 1 FROM memory_tombstone d
                              WHERE d.tenant_key = t.tenant_key))
            ORDER BY t.tenant_key""",
        {"shards": layout.shards, "numbers": list(shard_numbers), "model": model_id},
    ).fetchall()
    return [Tenant(r["user_id"], r["project_id"], r["shard"]) for r in rows]
