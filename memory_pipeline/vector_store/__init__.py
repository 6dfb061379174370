"""Vector store: a Chroma collection per tenant, or per shard and model in a sharded home,
reached through the Chroma server."""

from memory_pipeline.vector_store.chroma import (
    ChromaVectorStore,
    VectorHit,
    VectorStoreUnavailable,
    connect_chroma,
    is_shard_collection,
    vector_id,
    vector_metadata,
)

__all__ = [
    "ChromaVectorStore",
    "VectorHit",
    "VectorStoreUnavailable",
    "connect_chroma",
    "is_shard_collection",
    "vector_id",
    "vector_metadata",
]
