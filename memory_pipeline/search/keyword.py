"""Keyword retrieval: Okapi BM25 over Postgres full text (``search_tsv``), at any tenant size.

Any query term may match (OR): questions rarely contain every word of the memory that answers
them. Term statistics (document frequencies, the tenant's size and average length) come from
``memory_term_stats``, kept exact by triggers (``sql/007``), so a word every memory shares (a
speaker's name, say) counts for little.

Which memories get scored depends on how much work the query implies:

- If the query's terms are held by at most :data:`EXACT_POSTINGS_BUDGET` memories in all,
  every memory holding any of them is scored: exact BM25. This is every query of a tenant of a
  few thousand memories.
- Otherwise (large tenants, common words), a term held by at most :data:`CHAMPION_LIST_LENGTH`
  memories still brings all of them (from the GIN index, always current), while a more common
  term brings only the head of its champion list: the memories where it weighs most,
  precomputed by the pipeline (:mod:`memory_pipeline.storage.term_stats`). This is the
  *champion list* technique of Manning, Raghavan & Schütze, *Introduction to Information
  Retrieval*, §7.1.3. The lists are read as deep as :data:`CHAMPION_POSTINGS_BUDGET` leaves
  room for once the rarer terms' memories are counted, shared equally among the common terms
  (never less than :data:`MIN_CHAMPION_DEPTH`): the deeper, the closer to exact BM25, at about
  5 µs per memory scored. What may be missed is a memory that holds only common query terms and
  none of them strongly (or that arrived since its tenant's lists were last rebuilt). Every
  candidate is then scored exactly, over all query terms.

Memories the caller already has from vector search (``also``) are always scored too.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from memory_pipeline.search.filters import where_to_sql
from memory_pipeline.storage.term_stats import (
    BM25_B,
    BM25_K1,
    BM25_WEIGHT_SQL,
    CHAMPION_LIST_LENGTH,
    TermStatistics,
    term_statistics,
    tsquery_any,
)

#: Up to this many (memory, query term) matches, every matching memory is scored.
EXACT_POSTINGS_BUDGET = 2000
#: Past the exact budget, about this many memories are scored: the rare terms' memories, then
#: the heads of the common terms' champion lists, read as deep as what is left allows.
CHAMPION_POSTINGS_BUDGET = 640
#: Champion lists are read at least this deep, however little of the budget is left.
MIN_CHAMPION_DEPTH = 64


def idf(doc_freq: int, docs: int) -> float:
    """BM25's inverse document frequency, ``ln(1 + (N − df + 0.5) / (df + 0.5))`` (never < 0)."""
    return math.log(1.0 + (max(docs - doc_freq, 0) + 0.5) / (doc_freq + 0.5))


def term_weight(tf: int, length: int, avg_length: float) -> float:
    """BM25's saturating term-frequency weight of one term in one memory."""
    norm = 1.0 - BM25_B + BM25_B * length / max(avg_length, 1.0)
    return tf * (BM25_K1 + 1.0) / (tf + BM25_K1 * norm)


def query_idfs(stats: TermStatistics, terms: Sequence[str]) -> list[float]:
    """Each term's idf in the tenant, for scoring.

    The statistics may be a moment older than the memories scored (another statement): a term
    they do not count yet counts as held by one memory.
    """
    docs = max(stats.docs, 1)
    return [idf(max(stats.doc_freq.get(t, 0), 1), docs) for t in terms]


@dataclass(frozen=True)
class CandidatePlan:
    """Where a query's candidates come from: terms looked up in full, and champion terms
    (the first ``champion_depth`` memories of each one's list)."""

    full_terms: tuple[str, ...]
    champion_terms: tuple[str, ...]
    champion_depth: int = 0

    @property
    def exact(self) -> bool:
        return not self.champion_terms


def plan_candidates(
    doc_freq: Mapping[str, int],
    *,
    exact_budget: int = EXACT_POSTINGS_BUDGET,
    list_length: int = CHAMPION_LIST_LENGTH,
    champion_budget: int = CHAMPION_POSTINGS_BUDGET,
) -> CandidatePlan:
    """Decide which query terms bring all their memories and which only their champions.

    Terms no memory holds are dropped. Within ``exact_budget`` (memory, term) matches every
    term is looked up in full; beyond it, only terms held by at most ``list_length`` memories
    are, and what ``champion_budget`` leaves after them is shared among the common terms' lists
    (each read at least :data:`MIN_CHAMPION_DEPTH`, at most ``list_length`` deep).
    """
    present = {t: df for t, df in doc_freq.items() if df > 0}
    if sum(present.values()) <= exact_budget:
        return CandidatePlan(tuple(sorted(present)), ())
    full = tuple(sorted(t for t, df in present.items() if df <= list_length))
    common = tuple(sorted(t for t, df in present.items() if df > list_length))
    if not common:  # many mid-frequency terms: each brings all its memories, none is common
        return CandidatePlan(full, ())
    left = champion_budget - sum(present[t] for t in full)
    depth = min(list_length, max(MIN_CHAMPION_DEPTH, left // len(common)))
    return CandidatePlan(full, common, depth)


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
    where: Mapping[str, Any] | None,
    n: int,
    also: Collection[int] = (),
) -> dict[int, float]:
    """BM25 scores of the ``n`` best candidates of ``plan`` (and of those in ``also``).

    Scored in Postgres, over every query term each candidate holds; only candidates that match
    ``where`` are scored.
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
    condition = where_to_sql(where) if where else sql.SQL("true")
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
        condition=condition,
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


def keyword_candidates(
    conn: psycopg.Connection,
    tenant_key: str,
    query: str,
    n: int,
    where: Mapping[str, Any] | None = None,
    also: Collection[int] = (),
    *,
    exact_budget: int = EXACT_POSTINGS_BUDGET,
    champion_budget: int = CHAMPION_POSTINGS_BUDGET,
) -> dict[int, float]:
    """BM25 scores of the tenant's ``n`` best keyword matches, plus those of the ids in ``also``.

    Only memories that hold a query term and match ``where`` have a score; ``where`` decides
    what may be returned, not the term statistics. ``exact_budget`` and ``champion_budget``:
    see :func:`plan_candidates`.
    """
    terms = query_terms(conn, query)
    if not terms:
        return {}
    stats = term_statistics(conn, tenant_key, terms)
    if stats.docs == 0:
        return {}
    plan = plan_candidates(
        stats.doc_freq, exact_budget=exact_budget, champion_budget=champion_budget
    )
    return score_candidates(conn, tenant_key, terms, plan, stats, where, n, also)
