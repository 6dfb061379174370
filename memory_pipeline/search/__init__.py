"""Search: embed a query and return a tenant's most similar memories."""

from memory_pipeline.search.filters import METADATA_KEYS, validate_where_filter
from memory_pipeline.search.result import SearchResult
from memory_pipeline.search.searcher import SEARCH_BACKENDS, SEARCH_MODES, MemorySearch

__all__ = [
    "METADATA_KEYS",
    "SEARCH_BACKENDS",
    "SEARCH_MODES",
    "MemorySearch",
    "SearchResult",
    "validate_where_filter",
]
