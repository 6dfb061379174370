"""What a memory is allowed to be: the rules every front door applies before a row is written.

``MemoryStore``, the bulk import and the HTTP service all accept memories from outside; each
calls these functions, so a record one door takes is a record every door takes. Tenant ids
have their own rule in :mod:`memory_pipeline.tenancy`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

#: Every state of a ``memory_log`` row (``sql/001_memory_log.sql``).
MEMORY_STATES: Final = ("pending", "embedded", "skipped", "failed", "dead")
#: States the pipeline leaves alone until someone acts (``retry``, a new ``raw_data``).
TERMINAL_STATES: Final = ("embedded", "skipped", "dead")
#: Why a document nested deeper than Python's JSON recursion limit is refused.
TOO_DEEP: Final = "is nested too deeply (Python's JSON stops at about 1,000 levels)"
#: Longest accepted ``external_id``, in characters.
MAX_EXTERNAL_ID_CHARS: Final = 1024


def parse_json_object(value: Any, what: str) -> dict[str, Any]:
    """``value`` as a JSON object: a dict, or JSON text holding one; else ``ValueError`` naming ``what``."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"{what} is not valid JSON: {exc}") from None
        except RecursionError:
            raise ValueError(f"{what} {TOO_DEEP}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def validate_raw_data(raw_data: Any, max_document_bytes: int | None) -> dict[str, Any]:
    """Return ``raw_data`` if the database will take it; else raise ``ValueError`` (one line).

    It must be a JSON object (or a string holding one) without ``\\u0000`` (jsonb rejects it)
    and at most ``max_document_bytes`` long as JSON (``None``: the pipeline checks the size).
    """
    raw_data = parse_json_object(raw_data, "raw_data")
    try:
        text = json.dumps(raw_data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"raw_data is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ValueError(f"raw_data {TOO_DEEP}") from None
    if "\\u0000" in text:
        raise ValueError("raw_data contains a \\u0000 character, which PostgreSQL jsonb rejects")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("raw_data contains a lone surrogate, which is not valid Unicode") from None
    if max_document_bytes is not None and size > max_document_bytes:
        raise ValueError(f"raw_data is {size} bytes; the limit is {max_document_bytes}")
    return raw_data


def validate_external_id(external_id: Any) -> str | None:
    """Return ``external_id`` (``None`` when absent) or raise ``ValueError`` (one line).

    An idempotency key: a string of 1 to 1024 characters, without NUL, valid UTF-8.
    """
    if external_id is None:
        return None
    if (
        not isinstance(external_id, str)
        or not external_id
        or len(external_id) > MAX_EXTERNAL_ID_CHARS
    ):
        raise ValueError(f"external_id must be a string of 1 to {MAX_EXTERNAL_ID_CHARS} characters")
    if "\x00" in external_id:
        raise ValueError("external_id contains a NUL character")
    try:
        external_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("external_id is not valid UTF-8") from None
    return external_id


def validate_occurred_at(occurred_at: Any, field: str = "occurred_at") -> datetime | None:
    """Return the memory's own time as an aware datetime (``None`` when absent).

    A ``datetime`` or an ISO 8601 string; a time without offset is UTC. Anything else, or a
    time out of range, raises ``ValueError`` (one line) naming ``field``.
    """
    if occurred_at is None:
        return None
    if isinstance(occurred_at, datetime):
        moment = occurred_at
    elif isinstance(occurred_at, str):
        try:
            moment = datetime.fromisoformat(occurred_at.strip())
        except ValueError:
            raise ValueError(f"{field} is not an ISO 8601 timestamp: {occurred_at!r:.80}") from None
    else:
        raise ValueError(
            f"{field} must be a datetime or an ISO 8601 string, got {type(occurred_at).__name__}"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field} is out of range: {occurred_at!r:.80}") from None
    return moment
