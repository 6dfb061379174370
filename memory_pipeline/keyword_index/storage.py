"""The keyword index's SQL: term statistics, champion lists and BM25 scoring in Postgres.

Triggers (``sql/007``) record every change to the statistics as an appended delta;
:func:`compact_term_stats` folds them in, and readers add the two, so what they see is exact at
every commit. Champion lists are derived from the rows: merged with each run's memories, rebuilt
from scratch once :data:`CHAMPION_REBUILD_FRACTION` of a tenant's memories have left
(docs/decisions/0003-champion-list-length.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import psycopg
from psycopg import sql

from memory_pipeline.keyword_index.bm25 import BM25_B, BM25_K1, TermStatistics, query_idfs
from memory_pipeline.keyword_index.plan import CHAMPION_LIST_LENGTH, CandidatePlan

#: The term under which memory_term_stats keeps a tenant's totals.
TOTALS_TERM = ""
#: A tenant's champion lists are rebuilt once this share of its memories left since the last
#: rebuild (their ids linger in the lists until then, taking places).
CHAMPION_REBUILD_FRACTION = 0.25

#: BM25's term weight of a posting (``x.tf``, the length of ``m.search_tsv``) as a SQL
#: expression over the parameters k1, b and avg; the same as
#: :func:`memory_pipeline.keyword_index.bm25.term_weight`.
BM25_WEIGHT_SQL = """x.tf * (%(k1)s + 1) / (x.tf + %(k1)s * (1 - %(b)s
             + %(b)s * length(m.search_tsv) / %(avg)s))"""
# Each (term, memory) of the tenant's embedded memories that pass {where}, with its weight.
_POSTINGS = f"""SELECT x.lexeme AS term, m.id, {BM25_WEIGHT_SQL} AS weight
    FROM memory_log m
    CROSS JOIN LATERAL (
        SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
        FROM unnest(m.search_tsv) AS t) AS x
    WHERE m.tenant_key = %(tenant)s AND m.status = 'embedded' AND {{where}}"""
# Keep the best %(length)s of {postings} per term, replacing those terms' lists.
_WRITE_LISTS = """WITH ranked AS (
        SELECT term, id, weight,
               row_number() OVER (PARTITION BY term ORDER BY weight DESC, id) AS place
        FROM ({postings}) AS p)
    INSERT INTO memory_term_champion AS c (tenant_key, term, log_ids, weights)
    SELECT %(tenant)s, term, array_agg(id ORDER BY place), array_agg(weight::real ORDER BY place)
    FROM ranked WHERE place <= %(length)s
    GROUP BY term
    ON CONFLICT (tenant_key, term) DO UPDATE
        SET log_ids = excluded.log_ids, weights = excluded.weights"""


def tsquery_any(terms: Sequence[str]) -> str:
    """A tsquery text matching any of ``terms`` (lexemes quoted for the tsquery parser)."""
    quoted = ("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms)
    return " | ".join(quoted)


def term_statistics(
    conn: psycopg.Connection, tenant_key: str, terms: Sequence[str]
) -> TermStatistics:
    """The tenant's statistics for ``terms``, exact as of this transaction's snapshot."""
    rows = conn.execute(
        "SELECT term, docs, length, removed FROM memory_term_stats_now "
        "WHERE tenant_key = %s AND term = ANY(%s)",
        (tenant_key, [TOTALS_TERM, *terms]),
    ).fetchall()
    by_term = {r["term"]: r for r in rows}
    totals = by_term.get(TOTALS_TERM)
    return TermStatistics(
        docs=int(totals["docs"]) if totals else 0,
        total_length=int(totals["length"]) if totals else 0,
        removed=int(totals["removed"]) if totals else 0,
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


def _common_terms(
    conn: psycopg.Connection,
    tenant_key: str,
    list_length: int,
    among: Sequence[str] | None = None,
) -> list[str]:
    """The tenant's terms held by more than ``list_length`` memories (only ``among``, if given)."""
    statement = (
        "SELECT term FROM memory_term_stats_now "
        "WHERE tenant_key = %(tenant)s AND term <> %(totals)s AND docs > %(length)s"
    )
    if among is not None:
        statement += " AND term = ANY(%(among)s)"
    rows = conn.execute(
        statement,
        {"tenant": tenant_key, "totals": TOTALS_TERM, "length": list_length, "among": among},
    ).fetchall()
    return [r["term"] for r in rows]


def _lock_champions(conn: psycopg.Connection, tenant_key: str) -> None:
    # One writer of a tenant's lists at a time: a merge reads a list, then replaces it.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"champions:{tenant_key}",)
    )


def champion_rebuilds_due(
    conn: psycopg.Connection,
    tenant_keys: Sequence[str],
    *,
    list_length: int = CHAMPION_LIST_LENGTH,
    rebuild_fraction: float = CHAMPION_REBUILD_FRACTION,
) -> list[str]:
    """The tenants whose champion lists must be built from scratch.

    A tenant needs lists once it has more memories than a list holds (before that, no term can
    be common); they are rebuilt when they were built with another length, or when more than
    ``rebuild_fraction`` of the tenant's memories left since the last rebuild.
    """
    if not tenant_keys:
        return []
    rows = conn.execute(
        """WITH totals AS (
               SELECT tenant_key, docs, removed FROM memory_term_stats_now
               WHERE tenant_key = ANY(%(keys)s) AND term = %(totals)s)
           SELECT t.tenant_key
           FROM totals t LEFT JOIN memory_term_champion_build b USING (tenant_key)
           WHERE t.docs > %(length)s
             AND (b.tenant_key IS NULL OR b.list_length <> %(length)s
                  OR t.removed - b.removed_at_build > %(fraction)s * t.docs)
           ORDER BY t.tenant_key""",
        {
            "keys": list(tenant_keys),
            "totals": TOTALS_TERM,
            "length": list_length,
            "fraction": rebuild_fraction,
        },
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
    """Rebuild the tenant's champion lists from scratch, in one transaction; return their count.

    Every term held by more than ``list_length`` embedded memories gets the ``list_length``
    memories where its BM25 term weight ``tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))`` is
    highest (ties by id), the weight keyword search scores with (:data:`BM25_WEIGHT_SQL`).
    """
    with conn.transaction():
        _lock_champions(conn, tenant_key)
        totals = term_statistics(conn, tenant_key, [])
        common = _common_terms(conn, tenant_key, list_length)
        conn.execute("DELETE FROM memory_term_champion WHERE tenant_key = %s", (tenant_key,))
        if common and totals.docs:
            postings = _POSTINGS.format(where="x.lexeme = ANY(%(terms)s)")
            conn.execute(
                _WRITE_LISTS.format(postings=postings),
                {
                    "tenant": tenant_key,
                    "terms": common,
                    "length": list_length,
                    "k1": k1,
                    "b": b,
                    "avg": max(totals.avg_length, 1.0),
                },
            )
        conn.execute(
            """INSERT INTO memory_term_champion_build (tenant_key, removed_at_build, list_length)
               VALUES (%s, %s, %s)
               ON CONFLICT (tenant_key) DO UPDATE
                   SET removed_at_build = excluded.removed_at_build,
                       list_length = excluded.list_length, built_at = now()""",
            (tenant_key, totals.removed, list_length),
        )
    return len(common)


def merge_into_champions(
    conn: psycopg.Connection,
    tenant_key: str,
    log_ids: Collection[int],
    *,
    list_length: int = CHAMPION_LIST_LENGTH,
    k1: float = BM25_K1,
    b: float = BM25_B,
) -> int:
    """Bring the tenant's lists up to date with newly embedded memories; return lists written.

    A term that became common since the lists were built gets its list (from the memories
    that hold it, found through the GIN index); every other list takes in the new memories
    that beat its last entry (an older entry of a re-embedded memory goes). Memories that left
    stay in the lists until the next rebuild; searches skip them.
    """
    with conn.transaction():
        _lock_champions(conn, tenant_key)
        totals = term_statistics(conn, tenant_key, [])
        if totals.docs == 0:
            return 0
        params = {
            "tenant": tenant_key,
            "ids": list(log_ids),
            "length": list_length,
            "k1": k1,
            "b": b,
            "avg": max(totals.avg_length, 1.0),
        }
        # only a term of the new memories can have just become common
        fresh_terms = [
            r["term"]
            for r in conn.execute(
                "SELECT DISTINCT t AS term FROM memory_log m, "
                "unnest(tsvector_to_array(m.search_tsv)) AS t "
                "WHERE m.id = ANY(%s) AND m.tenant_key = %s AND m.status = 'embedded' "
                "AND NOT EXISTS (SELECT 1 FROM memory_term_champion c "
                "                WHERE c.tenant_key = m.tenant_key AND c.term = t)",
                (list(log_ids), tenant_key),
            ).fetchall()
        ]
        new_common = (
            _common_terms(conn, tenant_key, list_length, among=fresh_terms) if fresh_terms else []
        )
        written = 0
        if new_common:
            postings = _POSTINGS.format(
                where="m.search_tsv @@ %(tsquery)s::tsquery AND x.lexeme = ANY(%(terms)s)"
            )
            written += conn.execute(
                _WRITE_LISTS.format(postings=postings),
                {**params, "terms": new_common, "tsquery": tsquery_any(new_common)},
            ).rowcount
        if log_ids:
            fresh = _POSTINGS.format(where="m.id = ANY(%(ids)s)")
            postings = f"""
                WITH lists AS (
                    SELECT term, log_ids, weights FROM memory_term_champion
                    WHERE tenant_key = %(tenant)s
                ), qualifying AS (
                    SELECT f.term, f.id, f.weight FROM ({fresh}) AS f JOIN lists l USING (term)
                    WHERE cardinality(l.log_ids) < %(length)s
                       OR f.weight > l.weights[cardinality(l.weights)]
                )
                SELECT term, id, weight FROM qualifying
                UNION ALL
                SELECT l.term, u.id, u.weight
                FROM lists l CROSS JOIN LATERAL unnest(l.log_ids, l.weights) AS u(id, weight)
                WHERE l.term IN (SELECT term FROM qualifying) AND u.id <> ALL(%(ids)s)"""
            written += conn.execute(_WRITE_LISTS.format(postings=postings), params).rowcount
    return written


def champion_lengths(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> dict[str, int]:
    """The list length each of the tenants' champion lists was last built with."""
    rows = conn.execute(
        "SELECT tenant_key, list_length FROM memory_term_champion_build WHERE tenant_key = ANY(%s)",
        (list(tenant_keys),),
    ).fetchall()
    return {r["tenant_key"]: int(r["list_length"]) for r in rows}


def delete_tenant_term_data(conn: psycopg.Connection, tenant_key: str) -> None:
    """Forget a purged tenant's statistics, deltas and champion lists."""
    for table in (
        "memory_term_stats",
        "memory_term_stats_delta",
        "memory_term_champion",
        "memory_term_champion_build",
    ):
        conn.execute(f"DELETE FROM {table} WHERE tenant_key = %s", (tenant_key,))


def query_terms(conn: psycopg.Connection, query: str) -> list[str]:
    """The distinct lexemes of ``query`` under the same text configuration as ``search_tsv``."""
    rows = conn.execute(
        "SELECT DISTINCT t FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS t",
        (query,),
    ).fetchall()
    return sorted(r["t"] for r in rows)


def score_candidates(
    conn: psycopg.Connection,
    tenant_key: str,
    terms: Sequence[str],
    plan: CandidatePlan,
    stats: TermStatistics,
    where: sql.Composable | None,
    n: int,
    also: Collection[int] = (),
) -> dict[int, float]:
    """BM25 scores of the ``n`` best candidates of ``plan`` (and of those in ``also``).

    Scored in Postgres, over every query term each candidate holds; only candidates that match
    ``where`` (a condition over ``memory_log m``) are scored.
    """
    sources: list[sql.Composable] = []
    if plan.full_terms:
        sources.append(sql.SQL("m.search_tsv @@ %(tsquery)s::tsquery"))
    if plan.champion_terms or also:
        sources.append(
            sql.SQL(
                "m.id = ANY(ARRAY(SELECT unnest(c.log_ids[1:%(depth)s]) "
                "FROM memory_term_champion c "
                "WHERE c.tenant_key = %(tenant)s AND c.term = ANY(%(champion_terms)s)) "
                "|| %(also)s::bigint[])"
            )
        )
    if not sources:
        return {}
    statement = sql.SQL(
        """SELECT id, score FROM (
               SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS place
               FROM (SELECT m.id, sum(q.idf * {weight}) AS score
                     FROM memory_log m
                     CROSS JOIN LATERAL (
                         SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
                         FROM unnest(ts_filter(setweight(m.search_tsv, 'A', %(terms)s), '{{a}}'))
                             AS t) AS x
                     JOIN unnest(%(terms)s::text[], %(idfs)s::float8[]) AS q(term, idf)
                         ON q.term = x.lexeme
                     WHERE m.tenant_key = %(tenant)s AND m.status = 'embedded'
                       AND ({sources}) AND {condition}
                     GROUP BY m.id) AS scored) AS ranked
           WHERE place <= %(n)s OR id = ANY(%(also)s::bigint[])"""
    ).format(
        weight=sql.SQL(BM25_WEIGHT_SQL),
        sources=sql.SQL(" OR ").join(sources),
        condition=where if where is not None else sql.SQL("true"),
    )
    rows = conn.execute(
        statement,
        {
            "tenant": tenant_key,
            "terms": list(terms),
            "idfs": query_idfs(stats, terms),
            "tsquery": tsquery_any(plan.full_terms),
            "champion_terms": list(plan.champion_terms),
            "depth": plan.champion_depth,
            "also": list(also),
            "n": n,
            "k1": BM25_K1,
            "b": BM25_B,
            "avg": max(stats.avg_length, 1.0),
        },
    ).fetchall()
    return {int(r["id"]): float(r["score"]) for r in rows}
