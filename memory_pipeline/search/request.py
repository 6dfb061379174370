"""What a search is asked: the query text as search can use it."""

from __future__ import annotations

import re

#: Longest query accepted, in characters: the model reads only its first ~256 word pieces,
#: and Postgres refuses a tsvector over 1 MB.
MAX_QUERY_CHARS = 10_000
# NUL: Postgres text cannot hold it. Lone surrogates: not encodable as UTF-8 (neither
# Postgres nor the tokenizer accept them).
_UNUSABLE = re.compile("[\x00\ud800-\udfff]")


def clean_query(query: object) -> str:
    """``query`` without the characters Postgres and the model refuse (NUL, lone surrogates).

    Raises ``ValueError`` (one line) when it is not a string, is blank once cleaned, or is
    longer than :data:`MAX_QUERY_CHARS`.
    """
    if not isinstance(query, str):
        raise ValueError("a search query must be a non-empty string")
    cleaned = _UNUSABLE.sub("", query)
    if not cleaned.strip():
        raise ValueError("a search query must be a non-empty string")
    if len(cleaned) > MAX_QUERY_CHARS:
        raise ValueError(
            f"a search query must be at most {MAX_QUERY_CHARS} characters, not {len(cleaned)}"
        )
    return cleaned
