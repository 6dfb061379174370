"""Processing: claim pending rows, extract, embed, write both stores (DESIGN §4).

:func:`process` is the one entry both front doors call; the steps of a batch live in
``prepare`` (decode + extract), ``embed``, ``write`` (Chroma, then Postgres), orchestrated by
``batch``; ``tombstones`` and ``rollout`` handle deletes and model switches.
"""

from memory_pipeline.processing.options import ProcessCounts, ProcessOptions
from memory_pipeline.processing.prepare import content_hash
from memory_pipeline.processing.process import (
    ProcessResult,
    process,
    process_tenant,
    process_tenants,
)
from memory_pipeline.processing.tombstones import apply_tombstones

__all__ = [
    "ProcessCounts",
    "ProcessOptions",
    "ProcessResult",
    "apply_tombstones",
    "content_hash",
    "process",
    "process_tenant",
    "process_tenants",
]
