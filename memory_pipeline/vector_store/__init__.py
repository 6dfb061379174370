"""Vector store: one Chroma collection per tenant, reached through the Chroma server."""

from memory_pipeline.vector_store.chroma import (
    ChromaVectorStore,
    VectorHit,
    VectorStoreUnavailable,
    connect_chroma,
    vector_id,
    vector_metadata,
)

__all__ = [
    "ChromaVectorStore",
    "VectorHit",
    "VectorStoreUnavailable",
    "connect_chroma",
    "vector_id",
    "vector_metadata",
]
