"""memory_pipeline: AI-agent memory logs → per-tenant vector memory (Postgres + pgvector + Chroma).

``from memory_pipeline import MemoryStore, SearchResult`` is the Python API (DESIGN §5);
``MemoryClient`` offers the same methods through the memory service (``memory-pipeline serve``).
"""

from typing import Any

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search.result import SearchResult

__all__ = ["MemoryClient", "MemoryStore", "SearchResult"]


def __getattr__(name: str) -> Any:  # httpx is imported only by those who use the client
    if name == "MemoryClient":
        from memory_pipeline.client import MemoryClient

        return MemoryClient
    raise AttributeError(f"module 'memory_pipeline' has no attribute {name!r}")
