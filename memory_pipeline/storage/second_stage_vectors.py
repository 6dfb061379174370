"""The second stage's vectors in memory_vector (docs/decisions/0153): which an embedded row
lacks, which should not be there, and dropping those.

An embedded row should hold one vector of the second model per chunk (``chunk_count``), under
the first stage's vector ids. Rows waiting for work (``pending``, ``failed``, ``dead``) keep
their last vectors of every model until they embed again, so only ``skipped`` rows, chunks past
an embedded row's count and vectors filed under another tenant are stale. Vectors of a model
that is neither the tenant's live model, the configured one nor the second stage's are left
from a replaced model. Every function takes an open psycopg connection; the caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg


@dataclass
class SecondStageGaps:
    """One tenant's second-stage vectors that are missing or should not be there."""

    missing: list[str] = field(default_factory=list)  # vector ids an embedded row lacks
    stale: list[str] = field(default_factory=list)  # second-model vector ids to drop
    other_models: dict[str, int] = field(default_factory=dict)  # replaced model -> vectors


def second_stage_gaps(
    conn: psycopg.Connection, tenant_keys: Sequence[str], model_id: str, first_model_id: str
) -> dict[str, SecondStageGaps]:
    """Per tenant key (every key present): the second model ``model_id``'s missing and stale
    vector ids, and the vectors of models neither live, ``first_model_id`` nor ``model_id``."""
    keys = list(tenant_keys)
    out = {key: SecondStageGaps() for key in keys}
    missing = conn.execute(
        """SELECT m.tenant_key,
                  CASE WHEN n = 0 THEN m.id::text ELSE m.id::text || '#' || n END AS vector_id
           FROM memory_log m CROSS JOIN LATERAL generate_series(0, m.chunk_count - 1) AS n
           WHERE m.tenant_key = ANY(%s) AND m.status = 'embedded'
             AND NOT EXISTS (SELECT 1 FROM memory_vector v
                             WHERE v.log_id = m.id AND v.embedding_model = %s
                               AND v.chunk_index = n)
           ORDER BY m.tenant_key, m.id, n""",
        (keys, model_id),
    ).fetchall()
    for r in missing:
        out[r["tenant_key"]].missing.append(r["vector_id"])
    stale = conn.execute(
        f"""SELECT v.tenant_key, v.vector_id FROM memory_vector v
            JOIN memory_log m ON m.id = v.log_id
            WHERE v.tenant_key = ANY(%s) AND v.embedding_model = %s AND {_STALE}
            ORDER BY v.tenant_key, v.log_id, v.chunk_index""",
        (keys, model_id),
    ).fetchall()
    for r in stale:
        out[r["tenant_key"]].stale.append(r["vector_id"])
    others = conn.execute(
        f"""SELECT v.tenant_key, v.embedding_model, count(*) AS n
            FROM memory_vector v JOIN memory_tenant t USING (tenant_key)
            WHERE v.tenant_key = ANY(%s) AND {_OTHER_MODEL}
            GROUP BY v.tenant_key, v.embedding_model ORDER BY 1, 2""",
        (keys, model_id, first_model_id),
    ).fetchall()
    for r in others:
        out[r["tenant_key"]].other_models[r["embedding_model"]] = int(r["n"])
    return out


def drop_stale_second_stage(
    conn: psycopg.Connection, tenant_key: str, model_id: str, first_model_id: str
) -> int:
    """Delete the tenant's stale second-stage vectors and those of replaced models (what
    :func:`second_stage_gaps` reports, missing ones aside); how many."""
    stale = conn.execute(
        f"""DELETE FROM memory_vector v USING memory_log m
            WHERE m.id = v.log_id AND v.tenant_key = %s AND v.embedding_model = %s
              AND {_STALE}""",
        (tenant_key, model_id),
    ).rowcount
    others = conn.execute(
        f"""DELETE FROM memory_vector v USING memory_tenant t
            WHERE t.tenant_key = v.tenant_key AND v.tenant_key = %s AND {_OTHER_MODEL}""",
        (tenant_key, model_id, first_model_id),
    ).rowcount
    return stale + others


#: A second-stage vector ``v`` of row ``m`` that should not exist (see the module docstring).
_STALE = """(m.status = 'skipped' OR m.tenant_key <> v.tenant_key
             OR (m.status = 'embedded' AND v.chunk_index >= m.chunk_count))"""
#: A vector ``v`` of tenant ``t`` of none of its models (parameters: second, first model).
_OTHER_MODEL = """v.embedding_model <> ALL(ARRAY[%s, %s]::text[])
                  AND v.embedding_model IS DISTINCT FROM t.live_model"""
