"""The search result type (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SearchResult:
    """One memory returned by a search.

    ``similarity`` is the raw cosine similarity of its best chunk to the query, in every mode
    (``min_similarity`` filters on it); ``score`` is the final ranking value (after fusion,
    conversation context and temporal decay), higher is better.
    """

    log_id: int
    external_id: str | None
    score: float
    similarity: float
    text: str
    memory_type: str
    occurred_at: datetime
    created_at: datetime
    raw_data: dict[str, Any] = field(repr=False)
    #: Why it ranked where it did (``explain=True`` only; docs/search.md#explain).
    explanation: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: datetimes as ISO 8601; ``explanation`` only when explained.

        Shallow: ``raw_data`` is this result's own dict, not a copy (``asdict`` deep-copied
        it: ~5 ms for ten work logs, most of a service search's formatting).
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["occurred_at"] = self.occurred_at.isoformat()
        out["created_at"] = self.created_at.isoformat()
        if self.explanation is None:
            del out["explanation"]
        return out
