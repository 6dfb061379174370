"""memory_pipeline: AI-agent memory logs → per-tenant vector memory (Postgres + pgvector + Chroma).

``from memory_pipeline import MemoryStore, SearchResult`` is the Python API (DESIGN §5).
"""

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search.result import SearchResult

__all__ = ["MemoryStore", "SearchResult"]
