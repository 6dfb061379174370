"""Which embedding model serves each tenant, and what a model rollout still lacks
(docs/architecture.md, "Changing the embedding model").

Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg


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


def record_rows_embedded_by(conn: psycopg.Connection, tenant_key: str, model_id: str) -> int:
    """Record ``model_id`` on the tenant's embedded rows that have its vectors but name another
    model (their vectors came from elsewhere than a re-embedding: the second stage's), with the
    content hash and first-chunk vector a re-embedding would have written
    (``processing.prepare.content_hash``); how many rows."""
    return conn.execute(
        """UPDATE memory_log AS m
           SET embedding_model = %(model)s, embedding = v.embedding,
               content_hash = encode(sha256(convert_to(%(model)s || E'\n' || m.search_text,
                                                        'UTF8')), 'hex')
           FROM memory_vector AS v
           WHERE m.tenant_key = %(tenant)s AND m.status = 'embedded'
             AND m.embedding_model IS DISTINCT FROM %(model)s
             AND v.log_id = m.id AND v.chunk_index = 0 AND v.embedding_model = %(model)s""",
        {"tenant": tenant_key, "model": model_id},
    ).rowcount


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


def chunk_texts_of(
    conn: psycopg.Connection, tenant_key: str, model_id: str, log_ids: Sequence[int]
) -> dict[int, list[str]]:
    """Each row's chunk texts as its ``model_id`` vectors hold them, in chunk order."""
    rows = conn.execute(
        """SELECT log_id, chunk_text FROM memory_vector
           WHERE tenant_key = %s AND embedding_model = %s AND log_id = ANY(%s)
           ORDER BY log_id, chunk_index""",
        (tenant_key, model_id, list(log_ids)),
    ).fetchall()
    out: dict[int, list[str]] = {}
    for r in rows:
        out.setdefault(int(r["log_id"]), []).append(r["chunk_text"])
    return out
