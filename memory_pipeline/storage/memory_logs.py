"""Queries on memory_log and its vectors: create, read, update, delete, claim and record results.

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from memory_pipeline.keyword_index.storage import delete_tenant_term_data
from memory_pipeline.tenancy import Tenant

#: Columns a caller of get_memory_log sees (the CLI's ``get``).
PUBLIC_COLUMNS = (
    "id, user_id, project_id, tenant_key, external_id, status, attempts, last_error, "
    "next_attempt_at, memory_type, occurred_at, created_at, updated_at, embedded_at, "
    "embedding_model, content_hash, chunk_count, text_truncated, search_text, raw_data"
)

#: Rows the pipeline may work on now.
WORKABLE = "(status = 'pending' OR (status = 'failed' AND next_attempt_at <= now()))"


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
    binary: as text, escaping every JSON document's quotes cost ~1 ms per row.
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


def ids_by_external_id(conn: psycopg.Connection, tenant_key: str) -> dict[str, int]:
    """The tenant's row ids by external id."""
    rows = conn.execute(
        "SELECT id, external_id FROM memory_log WHERE tenant_key = %s AND external_id IS NOT NULL",
        (tenant_key,),
    ).fetchall()
    return {r["external_id"]: int(r["id"]) for r in rows}


def get_memory_log(conn: psycopg.Connection, log_id: int) -> dict[str, Any] | None:
    """The row's public fields, or ``None``."""
    return conn.execute(
        f"SELECT {PUBLIC_COLUMNS} FROM memory_log WHERE id = %s", (log_id,)
    ).fetchone()


def update_raw_data(conn: psycopg.Connection, log_id: int, raw_data: dict[str, Any]) -> bool:
    """Replace ``raw_data`` (the trigger puts the row back to pending); return whether it existed."""
    cur = conn.execute(
        "UPDATE memory_log SET raw_data = %s WHERE id = %s", (Jsonb(raw_data), log_id)
    )
    return cur.rowcount > 0


def states_of(conn: psycopg.Connection, log_ids: Sequence[int]) -> dict[int, str]:
    """The ``status`` of each of ``log_ids`` that exists."""
    rows = conn.execute(
        "SELECT id, status FROM memory_log WHERE id = ANY(%s)", (list(log_ids),)
    ).fetchall()
    return {int(r["id"]): r["status"] for r in rows}


def delete_memory_log(conn: psycopg.Connection, log_id: int) -> bool:
    """Delete the row (the trigger records a tombstone); return whether it existed."""
    return conn.execute("DELETE FROM memory_log WHERE id = %s", (log_id,)).rowcount > 0


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

    Rows come in (tenant, id) order, after the row ``after`` names: a batch holds whole
    tenants rather than a row of each of hundreds of tenants, so it costs one Chroma upsert per
    tenant in it (rows of many tenants written at once have interleaved ids: in id order, 256
    rows of 1,000 tenants meant 256 upserts of one vector each).
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


@dataclass(frozen=True, slots=True)
class ProcessedRow:
    """What the store step made of a row: its text, type, time and content hash."""

    id: int
    search_text: str
    text_truncated: bool
    memory_type: str
    occurred_at: datetime
    content_hash: str


@dataclass(frozen=True, slots=True)
class EmbeddedRow(ProcessedRow):
    """A row whose new vectors were written to Chroma (one vector per chunk)."""

    chunk_texts: Sequence[str]
    vectors: np.ndarray  # one row per chunk

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_texts)


@dataclass(frozen=True, slots=True)
class UnchangedRow(ProcessedRow):
    """A row whose text and model are unchanged: its vectors are kept, nothing re-embedded."""

    chunk_count: int


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A row with nothing to embed; ``reason`` goes to ``last_error``."""

    id: int
    reason: str
    memory_type: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A row whose attempt failed; ``error`` goes to ``last_error``."""

    id: int
    error: str


def write_vectors(
    conn: psycopg.Connection,
    tenant_key: str | Mapping[int, str],
    model_id: str,
    rows: Sequence[EmbeddedRow],
) -> None:
    """Replace the rows' vectors of ``model_id`` in memory_vector (binary COPY).

    ``tenant_key`` is the rows' tenant, or a mapping from row id to tenant key.
    """
    fresh = list(rows)
    if not fresh:
        return
    conn.execute(
        "DELETE FROM memory_vector WHERE log_id = ANY(%s) AND embedding_model = %s",
        ([r.id for r in fresh], model_id),
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY memory_vector (log_id, embedding_model, chunk_index, tenant_key, chunk_text, embedding)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "text", "int4", "text", "text", "vector"])
        for row in fresh:
            key = tenant_key if isinstance(tenant_key, str) else tenant_key[row.id]
            for index, (text, vector) in enumerate(zip(row.chunk_texts, row.vectors, strict=True)):
                copy.write_row((row.id, model_id, index, key, text, vector))


def mark_embedded(
    conn: psycopg.Connection, model_id: str, rows: Sequence[EmbeddedRow | UnchangedRow]
) -> None:
    """Record text, hash, first-chunk vector and ``embedded`` status for the rows."""
    if not rows:
        return
    conn.execute(
        """UPDATE memory_log AS m
           SET status = 'embedded', search_text = u.search_text, text_truncated = u.truncated,
               memory_type = u.memory_type, occurred_at = u.occurred_at,
               content_hash = u.content_hash, embedding_model = %s, chunk_count = u.chunk_count,
               embedding = v.embedding, last_error = NULL, next_attempt_at = NULL,
               embedded_at = CASE WHEN u.reused THEN coalesce(m.embedded_at, now()) ELSE now() END
           FROM unnest(%s::bigint[], %s::text[], %s::bool[], %s::text[], %s::timestamptz[],
                       %s::text[], %s::int[], %s::bool[])
                AS u(id, search_text, truncated, memory_type, occurred_at, content_hash,
                     chunk_count, reused)
           LEFT JOIN memory_vector AS v
                  ON v.log_id = u.id AND v.chunk_index = 0 AND v.embedding_model = %s
           WHERE m.id = u.id""",
        (
            model_id,
            [r.id for r in rows],
            [r.search_text for r in rows],
            [r.text_truncated for r in rows],
            [r.memory_type for r in rows],
            [r.occurred_at for r in rows],
            [r.content_hash for r in rows],
            [r.chunk_count for r in rows],
            [isinstance(r, UnchangedRow) for r in rows],
            model_id,
        ),
    )


def mark_skipped(conn: psycopg.Connection, skipped: Sequence[SkippedRow]) -> None:
    """Record ``skipped`` with its reason; drop the rows' vectors."""
    if not skipped:
        return
    ids = [s.id for s in skipped]
    conn.execute("DELETE FROM memory_vector WHERE log_id = ANY(%s)", (ids,))
    conn.execute(
        """UPDATE memory_log AS m
           SET status = 'skipped', last_error = u.reason, memory_type = u.memory_type,
               occurred_at = u.occurred_at, search_text = NULL, content_hash = NULL,
               embedding = NULL, embedding_model = NULL, chunk_count = 0,
               next_attempt_at = NULL
           FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[])
                AS u(id, reason, memory_type, occurred_at)
           WHERE m.id = u.id""",
        (
            ids,
            [s.reason[:2000] for s in skipped],
            [s.memory_type for s in skipped],
            [s.occurred_at for s in skipped],
        ),
    )


def mark_failed(
    conn: psycopg.Connection,
    failures: Sequence[FailedRow],
    *,
    max_attempts: int,
    backoff_seconds: float,
) -> dict[int, str]:
    """Count an attempt for each row: ``failed`` with backoff, or ``dead`` when attempts are spent.

    Returns the new status of each row id.
    """
    if not failures:
        return {}
    rows = conn.execute(
        """UPDATE memory_log AS m
           SET attempts = m.attempts + 1,
               last_error = u.error,
               status = CASE WHEN m.attempts + 1 >= %s THEN 'dead' ELSE 'failed' END,
               next_attempt_at = CASE WHEN m.attempts + 1 >= %s THEN NULL
                    ELSE now() + make_interval(secs => %s * power(2, m.attempts)) END
           FROM unnest(%s::bigint[], %s::text[]) AS u(id, error)
           WHERE m.id = u.id
           RETURNING m.id, m.status""",
        (
            max_attempts,
            max_attempts,
            backoff_seconds,
            [f.id for f in failures],
            [f.error[:2000] for f in failures],
        ),
    ).fetchall()
    return {int(r["id"]): r["status"] for r in rows}


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


def reset_for_retry(conn: psycopg.Connection, tenant_key: str | None = None) -> int:
    """Put ``failed`` and ``dead`` rows (of one tenant, or all) back to pending; return the count."""
    cur = conn.execute(
        """UPDATE memory_log SET status = 'pending', attempts = 0, next_attempt_at = NULL
           WHERE status IN ('failed', 'dead') AND (%s::text IS NULL OR tenant_key = %s)""",
        (tenant_key, tenant_key),
    )
    return cur.rowcount


def tenant_of(conn: psycopg.Connection, tenant_key: str) -> Tenant | None:
    """The tenant recorded under ``tenant_key``, if any."""
    return tenants_of(conn, [tenant_key]).get(tenant_key)


def tenants_of(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> dict[str, Tenant]:
    """The tenants recorded under ``tenant_keys``, by key (unknown keys are left out)."""
    rows = conn.execute(
        "SELECT tenant_key, user_id, project_id FROM memory_tenant WHERE tenant_key = ANY(%s)",
        (list(tenant_keys),),
    ).fetchall()
    return {r["tenant_key"]: Tenant(r["user_id"], r["project_id"]) for r in rows}


def workable_tenants(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Tenants with work: workable rows or tombstones, with a fingerprint of that work.

    The fingerprint changes whenever the set of workable rows changes (new rows, updates,
    retries), so a run key built from it is never reused for different work.
    """
    return conn.execute(
        f"""WITH work AS (
                SELECT tenant_key, count(*) AS rows, max(id) AS max_id,
                       max(updated_at) AS last_change, sum(id) AS id_sum
                FROM memory_log WHERE {WORKABLE} GROUP BY tenant_key
            ), tomb AS (
                SELECT tenant_key, count(*) AS tombstones, max(log_id) AS max_tomb
                FROM memory_tombstone GROUP BY tenant_key
            )
            SELECT t.tenant_key, t.user_id, t.project_id,
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


def vector_ids_of_tenant(conn: psycopg.Connection, tenant_key: str, model_id: str) -> set[str]:
    """The tenant's vector ids of ``model_id`` in Postgres."""
    rows = conn.execute(
        "SELECT vector_id FROM memory_vector WHERE tenant_key = %s AND embedding_model = %s",
        (tenant_key, model_id),
    ).fetchall()
    return {r["vector_id"] for r in rows}


def dumps_raw(raw_data: Any) -> str:
    """``raw_data`` as compact JSON text (for size checks)."""
    return json.dumps(raw_data, ensure_ascii=False, separators=(",", ":"))


def purge_tenant_rows(conn: psycopg.Connection, tenant_key: str) -> int:
    """Delete every row, vector, tombstone, keyword statistic and the tenant record of one
    tenant; return rows deleted."""
    deleted = conn.execute("DELETE FROM memory_log WHERE tenant_key = %s", (tenant_key,)).rowcount
    conn.execute("DELETE FROM memory_tombstone WHERE tenant_key = %s", (tenant_key,))
    conn.execute("DELETE FROM memory_vector WHERE tenant_key = %s", (tenant_key,))
    delete_tenant_term_data(conn, tenant_key)
    conn.execute("DELETE FROM memory_tenant WHERE tenant_key = %s", (tenant_key,))
    return deleted


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


def rows_missing_model(conn: psycopg.Connection, tenant_key: str, model_id: str) -> int:
    """How many embedded rows of the tenant still lack vectors of ``model_id``."""
    return int(
        conn.execute(
            """SELECT count(*) AS n FROM memory_log m
               WHERE tenant_key = %s AND status = 'embedded'
                 AND NOT EXISTS (SELECT 1 FROM memory_vector v
                                 WHERE v.log_id = m.id AND v.embedding_model = %s)""",
            (tenant_key, model_id),
        ).fetchone()["n"]
    )


def live_model_of(conn: psycopg.Connection, tenant_key: str) -> str | None:
    """The model whose vectors serve the tenant's searches (``None`` before its first vectors)."""
    return live_models_of(conn, [tenant_key])[tenant_key]


def live_models_of(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> dict[str, str | None]:
    """:func:`live_model_of` for many tenants in one query."""
    rows = conn.execute(
        "SELECT tenant_key, live_model FROM memory_tenant WHERE tenant_key = ANY(%s)",
        (list(tenant_keys),),
    ).fetchall()
    found = {r["tenant_key"]: r["live_model"] for r in rows}
    return {key: found.get(key) for key in tenant_keys}


def set_live_model(conn: psycopg.Connection, tenant_key: str, model_id: str) -> None:
    conn.execute(
        "UPDATE memory_tenant SET live_model = %s WHERE tenant_key = %s", (model_id, tenant_key)
    )


def adopt_live_model(conn: psycopg.Connection, tenant_keys: Sequence[str], model_id: str) -> None:
    """Make ``model_id`` the live model of the tenants that have none yet (their first vectors)."""
    conn.execute(
        "UPDATE memory_tenant SET live_model = %s WHERE tenant_key = ANY(%s) AND live_model IS NULL",
        (model_id, list(tenant_keys)),
    )


def drop_model_vectors(conn: psycopg.Connection, tenant_key: str, model_id: str) -> int:
    """Delete the tenant's vectors of a retired model from memory_vector."""
    return conn.execute(
        "DELETE FROM memory_vector WHERE tenant_key = %s AND embedding_model = %s",
        (tenant_key, model_id),
    ).rowcount


def model_source_of(conn: psycopg.Connection, model_id: str) -> str | None:
    """Where a recorded model's weights were loaded from."""
    row = conn.execute(
        "SELECT model_source FROM embedding_model WHERE model_id = %s", (model_id,)
    ).fetchone()
    return row["model_source"] if row else None
