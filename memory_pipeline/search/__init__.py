"""Search: a tenant's memories by vector, keyword (BM25) or hybrid retrieval.

``request`` (what is asked, validated once), ``vector`` (the dense retriever), the keyword
retriever in :mod:`memory_pipeline.keyword_index`, ``ranking`` (fusion, context, decay),
``searcher`` (the steps in order), ``result`` (what comes back).
"""

from memory_pipeline.search.filters import METADATA_KEYS, validate_where_filter
from memory_pipeline.search.request import (
    DEFAULT_BACKEND,
    DEFAULT_MODE,
    SEARCH_BACKENDS,
    SEARCH_MODES,
    SearchRequest,
)
from memory_pipeline.search.result import SearchResult
from memory_pipeline.search.searcher import MemorySearch

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_MODE",
    "METADATA_KEYS",
    "SEARCH_BACKENDS",
    "SEARCH_MODES",
    "MemorySearch",
    "SearchRequest",
    "SearchResult",
    "validate_where_filter",
]
