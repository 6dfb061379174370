"""Consistency: do Postgres and Chroma agree for a tenant, and repair when they do not."""

from memory_pipeline.consistency.drift import VectorDrift, compare_tenants, compare_vectors
from memory_pipeline.consistency.repair import rebuild_collection_from_pgvector

__all__ = [
    "VectorDrift",
    "compare_tenants",
    "compare_vectors",
    "rebuild_collection_from_pgvector",
]
