"""Bulk import of memories from JSONL, CSV and Parquet files, through COPY and a staging table."""

from memory_pipeline.imports.bulk_import import (
    ImportSummary,
    import_candidates,
    import_files,
    import_paths,
)

__all__ = ["ImportSummary", "import_candidates", "import_files", "import_paths"]
