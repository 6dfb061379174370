"""Search: a tenant's memories by vector, keyword (BM25) or hybrid retrieval."""

from memory_pipeline.search.filters import METADATA_KEYS, validate_where_filter
from memory_pipeline.search.result import SearchResult
from memory_pipeline.search.searcher import (
    DEFAULT_BACKEND,
    DEFAULT_MODE,
    SEARCH_BACKENDS,
    SEARCH_MODES,
    MemorySearch,
)

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_MODE",
    "METADATA_KEYS",
    "SEARCH_BACKENDS",
    "SEARCH_MODES",
    "MemorySearch",
    "SearchResult",
    "validate_where_filter",
]
