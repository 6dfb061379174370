"""The result type of text extraction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

MemoryType = Literal["work_log", "conversation_turn", "note", "other"]
MEMORY_TYPES: tuple[MemoryType, ...] = ("work_log", "conversation_turn", "note", "other")

#: The whole extracted text never exceeds this many characters; what lies past it is cut and the
#: cut is recorded (``ExtractedMemory.truncated``). Below it, long texts are chunked for embedding.
MAX_SEARCH_TEXT_CHARS = 32_000


@dataclass(frozen=True, slots=True)
class ExtractedMemory:
    """What extraction made of one ``raw_data`` document.

    ``text`` is the searchable text (empty when there is nothing to embed, with ``skip_reason``
    saying why); ``occurred_at`` is the memory's own time when the document carries one.
    """

    text: str
    memory_type: MemoryType
    occurred_at: datetime | None = None
    truncated: bool = False
    skip_reason: str | None = None
