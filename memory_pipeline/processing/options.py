"""What a caller may set about the store step, and how its rows ended."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from memory_pipeline.search.second_stage import second_stage_embedder
from memory_pipeline.settings import Settings


@dataclass
class ProcessCounts:
    """How the rows of one or more runs ended (DESIGN §5 ``process_pending``)."""

    embedded: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    unchanged: int = 0  # embedded rows whose content hash matched: nothing re-embedded
    deleted: int = 0  # tombstones applied to Chroma
    reembedded: int = 0  # rows given vectors of a newly configured model (a rollout)
    switched: int = 0  # 1 when this run switched the tenant's searches to the new model
    moved: int = 0  # 1 when this run moved the tenant's vectors into its shard (decision 0203)

    def add(self, other: ProcessCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def total(cls, counts: Iterable[ProcessCounts]) -> ProcessCounts:
        """The sum of ``counts``."""
        out = cls()
        for c in counts:
            out.add(c)
        return out


@dataclass(frozen=True)
class ProcessOptions:
    """Knobs of the store step."""

    batch_rows: int = 512
    max_attempts: int = 5
    retry_backoff_seconds: float = 30.0
    max_document_bytes: int = 1024 * 1024
    #: Called after the Chroma upsert and before the Postgres write (fault injection in tests).
    after_vector_upsert: Callable[[Sequence[int]], None] | None = field(default=None, compare=False)
    #: Called with each committed batch's counts (progress in the Dagster run log).
    on_batch: Callable[[ProcessCounts], None] | None = field(default=None, compare=False)
    #: The second stage's model: its vectors are written by the same batch (docs/decisions/0153).
    second_stage: Any = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ProcessOptions:
        """The options a home's settings ask for (retries, backoff, size cap), then ``overrides``."""
        base = cls(
            max_attempts=settings.max_attempts,
            retry_backoff_seconds=settings.retry_backoff_seconds,
            max_document_bytes=settings.max_document_bytes,
            second_stage=second_stage_embedder(settings),
        )
        return replace(base, **overrides)
