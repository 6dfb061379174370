"""The keyword index: per-tenant BM25 term statistics and champion lists over Postgres full text.

Search asks it for candidates (:func:`keyword_candidates`); the pipeline keeps it current after
each run (:func:`refresh_keyword_index`, :func:`compact_term_stats`); purge forgets a tenant
(:func:`delete_tenant_term_data`). Inside: ``bm25`` (the formulas), ``plan`` (which memories a
query scores), ``storage`` (all of its SQL).
"""

from memory_pipeline.keyword_index.index import keyword_candidates, refresh_keyword_index
from memory_pipeline.keyword_index.plan import CHAMPION_POSTINGS_BUDGET, EXACT_POSTINGS_BUDGET
from memory_pipeline.keyword_index.storage import compact_term_stats, delete_tenant_term_data

__all__ = [
    "CHAMPION_POSTINGS_BUDGET",
    "EXACT_POSTINGS_BUDGET",
    "compact_term_stats",
    "delete_tenant_term_data",
    "keyword_candidates",
    "refresh_keyword_index",
]
