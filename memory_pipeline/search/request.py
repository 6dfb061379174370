"""What a search is asked, validated once: :class:`SearchRequest`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, cast

from memory_pipeline.search.filters import validate_where_filter
from memory_pipeline.tenancy import Tenant

SearchMode = Literal["vector", "keyword", "hybrid"]
SearchBackend = Literal["auto", "chroma", "pgvector"]
SEARCH_MODES: tuple[str, ...] = ("vector", "keyword", "hybrid")
SEARCH_BACKENDS: tuple[str, ...] = ("auto", "chroma", "pgvector")
#: The mode that wins ``make eval`` (LoCoMo dev recall@10; docs/search.md).
DEFAULT_MODE: SearchMode = "hybrid"
#: ``auto``: an exact scan in Postgres for small tenants, Chroma beyond (docs/decisions/0204).
DEFAULT_BACKEND: SearchBackend = "auto"
MAX_LIMIT = 1000
#: Longest query accepted, in characters: the model reads only its first ~256 word pieces,
#: and Postgres refuses a tsvector over 1 MB.
MAX_QUERY_CHARS = 10_000
# NUL: Postgres text cannot hold it. Lone surrogates: not encodable as UTF-8 (neither
# Postgres nor the tokenizer accept them).
_UNUSABLE = re.compile("[\x00\ud800-\udfff]")


def clean_query(query: object) -> str:
    """``query`` without the characters Postgres and the model refuse (NUL, lone surrogates).

    Raises ``ValueError`` (one line) when it is not a string, is blank once cleaned, or is
    longer than :data:`MAX_QUERY_CHARS`.
    """
    if not isinstance(query, str):
        raise ValueError("a search query must be a non-empty string")
    cleaned = _UNUSABLE.sub("", query)
    if not cleaned.strip():
        raise ValueError("a search query must be a non-empty string")
    if len(cleaned) > MAX_QUERY_CHARS:
        raise ValueError(
            f"a search query must be at most {MAX_QUERY_CHARS} characters, not {len(cleaned)}"
        )
    return cleaned


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SearchRequest:
    """One tenant's search for one or more queries; every field valid once constructed.

    The fields are the arguments of ``search_similar_memories`` (DESIGN §5), with ``queries``
    for its query and ``tenant`` for its user and project; :meth:`of` takes them in that
    signature's order. ``where`` is the one filter the search applies: ``where_filter``,
    ``memory_types``, ``since`` and ``until`` combined.
    """

    queries: tuple[str, ...]
    tenant: Tenant
    limit: int = 10
    where_filter: dict[str, Any] | None = None
    min_similarity: float = 0.0
    enable_temporal_decay: bool = False
    half_life_days: float = 30.0
    mode: SearchMode = DEFAULT_MODE
    backend: SearchBackend = DEFAULT_BACKEND
    memory_types: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    explain: bool = False
    where: dict[str, Any] | None = field(init=False, repr=False, compare=False)

    @classmethod
    def of(
        cls, queries: Sequence[str], user_id: str, project_id: str, *args: Any, **options: Any
    ) -> SearchRequest:
        """A request from ``search_many``'s arguments: after the tenant, the fields of this class
        (the arguments of ``MemoryStore.search_similar_memories``, which spells them out), the
        first five (:data:`POSITIONAL_FIELDS`) also by position; ``None`` mode or backend: the
        default.

        Bad arguments raise ``ValueError`` with a one-line message; arguments this class does
        not have, or one given twice, raise ``TypeError`` as a call would.
        """
        if isinstance(queries, str):
            raise ValueError("queries must be a list of strings, not one string")
        if len(args) > len(POSITIONAL_FIELDS):
            raise TypeError(
                f"at most {len(POSITIONAL_FIELDS)} search arguments by position, got {len(args)}"
            )
        for name, value in zip(POSITIONAL_FIELDS, args, strict=False):
            if name in options:
                raise TypeError(f"search argument {name!r} given twice")
            options[name] = value
        unknown = set(options) - _OPTION_FIELDS
        if unknown:
            raise TypeError(f"unknown search argument(s): {', '.join(sorted(unknown))}")
        memory_types = options.pop("memory_types", None)
        if memory_types is not None and (isinstance(memory_types, str) or not memory_types):
            raise ValueError("memory_types must be a non-empty list of memory types")
        return cls(
            queries=tuple(queries),
            tenant=Tenant(user_id, project_id),
            mode=cast(SearchMode, options.pop("mode", None) or DEFAULT_MODE),
            backend=cast(SearchBackend, options.pop("backend", None) or DEFAULT_BACKEND),
            memory_types=None if memory_types is None else tuple(memory_types),
            **options,
        )

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are set once, here
        set_(self, "queries", tuple(clean_query(q) for q in self.queries))
        limit = self.limit
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}")
        if not -1.0 <= float(self.min_similarity) <= 1.0:
            raise ValueError("min_similarity must lie between -1 and 1")
        if self.enable_temporal_decay and not float(self.half_life_days) > 0:
            raise ValueError("half_life_days must be positive")
        if self.mode not in SEARCH_MODES:
            raise ValueError(
                f"unknown search mode {self.mode!r}; use one of {', '.join(SEARCH_MODES)}"
            )
        if self.backend not in SEARCH_BACKENDS:
            raise ValueError(
                f"unknown backend {self.backend!r}; use one of {', '.join(SEARCH_BACKENDS)}"
            )
        set_(self, "since", _aware(self.since, "since"))
        set_(self, "until", _aware(self.until, "until"))
        set_(self, "where", self._combined_filter())

    def _combined_filter(self) -> dict[str, Any] | None:
        parts: list[dict[str, Any]] = []
        if self.where_filter is not None:
            validate_where_filter(self.where_filter)
            parts.append(self.where_filter)
        if self.memory_types is not None:
            if not self.memory_types:
                raise ValueError("memory_types must be a non-empty list of memory types")
            if not all(isinstance(t, str) for t in self.memory_types):
                raise ValueError("memory_types must be strings")
            parts.append({"memory_type": {"$in": list(self.memory_types)}})
        if self.since is not None:
            parts.append({"occurred_at": {"$gte": self.since.timestamp()}})
        if self.until is not None:
            parts.append({"occurred_at": {"$lte": self.until.timestamp()}})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}


#: The search arguments after the tenant that may come by position, in the seed's order.
POSITIONAL_FIELDS = (
    "limit",
    "where_filter",
    "min_similarity",
    "enable_temporal_decay",
    "half_life_days",
)
_OPTION_FIELDS = {f.name for f in fields(SearchRequest) if f.init} - {"queries", "tenant"}
