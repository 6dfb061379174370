"""The keyword index's two entry points: candidates for a search, upkeep after a run."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import psycopg
from psycopg import sql

from memory_pipeline.keyword_index.plan import (
    CHAMPION_LIST_LENGTH,
    CHAMPION_POSTINGS_BUDGET,
    EXACT_POSTINGS_BUDGET,
    plan_candidates,
)
from memory_pipeline.keyword_index.storage import (
    build_champions,
    champion_lengths,
    champion_rebuilds_due,
    compact_term_stats,
    merge_into_champions,
    query_terms,
    score_candidates,
    term_statistics,
)


def keyword_candidates(
    conn: psycopg.Connection,
    tenant_key: str,
    query: str,
    n: int,
    where: sql.Composable | None = None,
    also: Collection[int] = (),
    *,
    exact_budget: int = EXACT_POSTINGS_BUDGET,
    champion_budget: int = CHAMPION_POSTINGS_BUDGET,
) -> dict[int, float]:
    """BM25 scores of the tenant's ``n`` best keyword matches, plus those of the ids in ``also``.

    Only memories that hold a query term and match ``where`` (a condition over ``memory_log
    m``) have a score; ``where`` decides what may be returned, not the term statistics.
    ``exact_budget`` and ``champion_budget``: see :func:`~.plan.plan_candidates`.
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


def refresh_keyword_index(
    conn: psycopg.Connection, embedded: Mapping[str, Collection[int]]
) -> list[str]:
    """Keep the keyword index of the tenants a run touched; return those rebuilt from scratch.

    ``embedded`` maps each tenant key to the memories the run embedded (or re-embedded). The
    statistics' deltas are folded in, then each tenant's champion lists are rebuilt if due
    (:func:`~.storage.champion_rebuilds_due`) or else merged with those memories. Run it
    between transactions: each step commits on its own.
    """
    keys = sorted(embedded)
    compact_term_stats(conn, keys)
    conn.commit()
    rebuild = champion_rebuilds_due(conn, keys)
    built_with = champion_lengths(conn, keys)
    conn.commit()
    for key in rebuild:
        build_champions(conn, key)
    for key in keys:
        # lists of another length are rebuilt once the tenant outgrows that length
        same_length = built_with.get(key) == CHAMPION_LIST_LENGTH
        if key not in rebuild and same_length and embedded[key]:
            merge_into_champions(conn, key, embedded[key])
    return rebuild
