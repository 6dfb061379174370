"""Processing: claim a tenant's pending rows, extract, embed, write both stores."""

from memory_pipeline.processing.process_tenant import (
    ProcessCounts,
    ProcessOptions,
    apply_tombstones,
    process_tenant,
    process_tenants,
)

__all__ = [
    "ProcessCounts",
    "ProcessOptions",
    "apply_tombstones",
    "process_tenant",
    "process_tenants",
]
