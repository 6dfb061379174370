"""Consistency: do Postgres and Chroma agree for a tenant, and repair when they do not."""

from memory_pipeline.consistency.drift import (
    TenantHealth,
    VectorDrift,
    compare_vectors,
    tenant_health,
    tenants_health,
)
from memory_pipeline.consistency.repair import rebuild_collection_from_pgvector

__all__ = [
    "TenantHealth",
    "VectorDrift",
    "compare_vectors",
    "rebuild_collection_from_pgvector",
    "tenant_health",
    "tenants_health",
]
