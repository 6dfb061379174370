"""Okapi BM25: the formulas keyword search scores with and champion lists are ordered by."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The usual defaults of Lucene/Anserini for short documents.
BM25_K1 = 0.9
BM25_B = 0.4


@dataclass(frozen=True)
class TermStatistics:
    """What BM25 needs to know of a tenant: its size and how common each query term is."""

    docs: int  # embedded memories of the tenant
    total_length: int  # the sum of their lengths (distinct lexemes of search_tsv)
    removed: int  # memories that left the tenant's embedded set since it began
    doc_freq: Mapping[str, int]  # embedded memories holding each asked term (0 if none)

    @property
    def avg_length(self) -> float:
        return self.total_length / self.docs if self.docs else 0.0


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
