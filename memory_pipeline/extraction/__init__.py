"""Text extraction: ``raw_data`` JSON → the text that gets embedded and searched."""

from memory_pipeline.extraction.extract import extract_memory
from memory_pipeline.extraction.model import (
    MAX_SEARCH_TEXT_CHARS,
    MEMORY_TYPES,
    ExtractedMemory,
    MemoryType,
)

__all__ = [
    "MAX_SEARCH_TEXT_CHARS",
    "MEMORY_TYPES",
    "ExtractedMemory",
    "MemoryType",
    "extract_memory",
]
