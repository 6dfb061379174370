"""Per-tenant term statistics and champion lists for keyword search (``sql/007``).

Triggers record every change to the statistics as an appended delta; :func:`compact_term_stats`
folds them in, and readers add the two, so what they see is exact at every commit. Champion
lists are derived from the rows and rebuilt when a tenant has changed enough
(:func:`champion_builds_due`, :func:`build_champions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg

#: The term under which memory_term_stats keeps a tenant's totals.
TOTALS_TERM = ""
#: BM25 parameters: the usual defaults of Lucene/Anserini for short documents. Champion lists
#: are ordered by the term weight they define.
BM25_K1 = 0.9
BM25_B = 0.4
#: Memories kept per common term (a term held by more memories than this is common).
CHAMPION_LIST_LENGTH = 64
#: Champion lists are rebuilt once this share of a tenant's memories came or went.
CHAMPION_REBUILD_FRACTION = 0.1


@dataclass(frozen=True)
class TermStatistics:
    """What BM25 needs to know of a tenant: its size and how common each query term is."""

    docs: int  # embedded memories of the tenant
    total_length: int  # the sum of their lengths (distinct lexemes of search_tsv)
    changes: int  # memories that came or went since the tenant began
    doc_freq: Mapping[str, int]  # embedded memories holding each asked term (0 if none)

    @property
    def avg_length(self) -> float:
        return self.total_length / self.docs if self.docs else 0.0


def term_statistics(
    conn: psycopg.Connection, tenant_key: str, terms: Sequence[str]
) -> TermStatistics:
    """The tenant's statistics for ``terms``, exact as of this transaction's snapshot."""
    rows = conn.execute(
        """SELECT term, sum(docs) AS docs, sum(length) AS length, sum(changes) AS changes
           FROM (SELECT term, docs, length, changes FROM memory_term_stats
                 WHERE tenant_key = %(tenant)s AND term = ANY(%(terms)s)
                 UNION ALL
                 SELECT term, docs, length, changes FROM memory_term_stats_delta
                 WHERE tenant_key = %(tenant)s AND term = ANY(%(terms)s)) AS s
           GROUP BY term""",
        {"tenant": tenant_key, "terms": [TOTALS_TERM, *terms]},
    ).fetchall()
    by_term = {r["term"]: r for r in rows}
    totals = by_term.get(TOTALS_TERM)
    return TermStatistics(
        docs=int(totals["docs"]) if totals else 0,
        total_length=int(totals["length"]) if totals else 0,
        changes=int(totals["changes"]) if totals else 0,
        doc_freq={t: int(by_term[t]["docs"]) if t in by_term else 0 for t in terms},
    )


def compact_term_stats(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> int:
    """Fold the tenants' pending deltas into their statistics; return the terms touched.

    Run it outside a long transaction: it serialises with other compactions of these tenants.
    """
    if not tenant_keys:
        return 0
    row = conn.execute(
        "SELECT memory_term_stats_compact(%s) AS folded", (sorted(set(tenant_keys)),)
    ).fetchone()
    return int(row["folded"]) if row else 0


def champion_builds_due(
    conn: psycopg.Connection,
    tenant_keys: Sequence[str],
    *,
    list_length: int = CHAMPION_LIST_LENGTH,
    rebuild_fraction: float = CHAMPION_REBUILD_FRACTION,
) -> list[str]:
    """The tenants whose champion lists are missing or stale.

    A tenant needs lists once it has more memories than a list holds (before that, no term can
    be common); they are stale when they were built with another length, or when more than
    ``rebuild_fraction`` of the tenant's memories came or went since.
    """
    if not tenant_keys:
        return []
    rows = conn.execute(
        """WITH totals AS (
               SELECT tenant_key, sum(docs) AS docs, sum(changes) AS changes
               FROM (SELECT tenant_key, docs, changes FROM memory_term_stats
                     WHERE tenant_key = ANY(%(keys)s) AND term = ''
                     UNION ALL
                     SELECT tenant_key, docs, changes FROM memory_term_stats_delta
                     WHERE tenant_key = ANY(%(keys)s) AND term = '') AS s
               GROUP BY tenant_key)
           SELECT t.tenant_key
           FROM totals t LEFT JOIN memory_term_champion_build b USING (tenant_key)
           WHERE t.docs > %(length)s
             AND (b.tenant_key IS NULL OR b.list_length <> %(length)s
                  OR t.changes - b.changes_at_build > %(fraction)s * t.docs)
           ORDER BY t.tenant_key""",
        {"keys": list(tenant_keys), "length": list_length, "fraction": rebuild_fraction},
    ).fetchall()
    return [r["tenant_key"] for r in rows]


def build_champions(
    conn: psycopg.Connection,
    tenant_key: str,
    *,
    list_length: int = CHAMPION_LIST_LENGTH,
    k1: float = BM25_K1,
    b: float = BM25_B,
) -> int:
    """Rebuild the tenant's champion lists in one transaction; return how many terms got one.

    Every term held by more than ``list_length`` embedded memories gets the ``list_length``
    memories where its BM25 term weight ``tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))`` is
    highest (ties by id), the same weight :func:`memory_pipeline.search.keyword.bm25_scores`
    uses. Concurrent builds of one tenant take turns.
    """
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"champions:{tenant_key}",)
        )
        totals = term_statistics(conn, tenant_key, [])
        common = [
            r["term"]
            for r in conn.execute(
                """SELECT term FROM (
                       SELECT term, sum(docs) AS docs
                       FROM (SELECT term, docs FROM memory_term_stats
                             WHERE tenant_key = %(tenant)s AND term <> ''
                             UNION ALL
                             SELECT term, docs FROM memory_term_stats_delta
                             WHERE tenant_key = %(tenant)s AND term <> '') AS s
                       GROUP BY term) AS t
                   WHERE docs > %(length)s""",
                {"tenant": tenant_key, "length": list_length},
            ).fetchall()
        ]
        conn.execute("DELETE FROM memory_term_champion WHERE tenant_key = %s", (tenant_key,))
        if common and totals.docs:
            conn.execute(
                """INSERT INTO memory_term_champion (tenant_key, term, log_ids)
                   SELECT %(tenant)s, term, array_agg(id ORDER BY place)
                   FROM (SELECT p.term, p.id, row_number() OVER (
                             PARTITION BY p.term ORDER BY p.weight DESC, p.id) AS place
                         FROM (SELECT x.lexeme AS term, m.id,
                                      x.tf * (%(k1)s + 1) / (x.tf + %(k1)s * (1 - %(b)s
                                          + %(b)s * length(m.search_tsv) / %(avg)s)) AS weight
                               FROM memory_log m
                               CROSS JOIN LATERAL (
                                   SELECT t.lexeme,
                                          coalesce(array_length(t.positions, 1), 1)::float8 AS tf
                                   FROM unnest(ts_filter(
                                       setweight(m.search_tsv, 'A', %(common)s), '{a}')) AS t
                               ) AS x
                               WHERE m.tenant_key = %(tenant)s AND m.status = 'embedded'
                         ) AS p) AS ranked
                   WHERE place <= %(length)s
                   GROUP BY term""",
                {
                    "tenant": tenant_key,
                    "common": common,
                    "length": list_length,
                    "k1": k1,
                    "b": b,
                    "avg": max(totals.avg_length, 1.0),
                },
            )
        conn.execute(
            """INSERT INTO memory_term_champion_build (tenant_key, changes_at_build, list_length)
               VALUES (%s, %s, %s)
               ON CONFLICT (tenant_key) DO UPDATE
                   SET changes_at_build = excluded.changes_at_build,
                       list_length = excluded.list_length, built_at = now()""",
            (tenant_key, totals.changes, list_length),
        )
    return len(common)


def refresh_keyword_index(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> list[str]:
    """Fold the tenants' statistics deltas and rebuild their stale champion lists.

    Returns the tenants whose lists were rebuilt. Run it after the tenants' rows changed, in
    autocommit or between transactions (each step commits on its own).
    """
    compact_term_stats(conn, tenant_keys)
    conn.commit()
    due = champion_builds_due(conn, tenant_keys)
    conn.commit()
    for key in due:
        build_champions(conn, key)
    return due


def delete_tenant_term_data(conn: psycopg.Connection, tenant_key: str) -> None:
    """Forget a purged tenant's statistics, deltas and champion lists."""
    for table in (
        "memory_term_stats",
        "memory_term_stats_delta",
        "memory_term_champion",
        "memory_term_champion_build",
    ):
        conn.execute(f"DELETE FROM {table} WHERE tenant_key = %s", (tenant_key,))
