"""Validation of imported records: a record the database will take, or a one-line reason why not."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

from memory_pipeline.memories import validate_external_id, validate_occurred_at, validate_raw_data
from memory_pipeline.tenancy import tenant_key, validate_tenant_id

#: Distinct tenants whose validation is remembered during one import.
_TENANT_CACHE_SIZE = 50_000


class ImportRow(NamedTuple):
    """A valid record, in the column order of the staging table (after ``batch_id``)."""

    line: int
    user_id: str
    project_id: str
    tenant_key: str
    external_id: str | None
    raw_data: str  # JSON text of an object
    created_at: datetime | None
    occurred_at: datetime | None


def _is_absent(value: Any) -> bool:
    # CSV has no null: an empty field means "not given", and other formats follow suit.
    return value is None or value == ""


def _timestamp(value: Any, field: str) -> datetime | None:
    return None if _is_absent(value) else validate_occurred_at(value, field)


def _external_id(value: Any) -> str | None:
    if _is_absent(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids from JSON or Parquet are ids all the same
    return validate_external_id(value)


class RecordValidator:
    """Turns records read from a file into :class:`ImportRow` s.

    Rules (those of :mod:`memory_pipeline.memories`, as for ``MemoryStore.create_memory_log``): ``user_id`` and ``project_id`` valid
    tenant ids; ``raw_data`` a JSON object (or a string holding one) without ``\\u0000`` and
    within ``max_document_bytes``; ``external_id`` absent or 1–1024 characters (integers are
    taken as their decimal text); ``created_at`` / ``occurred_at`` absent or ISO 8601 (a time
    without offset is UTC). Other fields are ignored.
    """

    def __init__(self, max_document_bytes: int) -> None:
        self.max_document_bytes = max_document_bytes
        self._tenant_keys: dict[tuple[str, str], str] = {}

    def _tenant_key(self, user_id: Any, project_id: Any) -> str:
        if _is_absent(user_id):
            raise ValueError("user_id is missing")
        if _is_absent(project_id):
            raise ValueError("project_id is missing")
        pair = (user_id, project_id)
        try:
            return self._tenant_keys[pair]
        except (KeyError, TypeError):
            pass
        validate_tenant_id(user_id, "user_id")
        validate_tenant_id(project_id, "project_id")
        if len(self._tenant_keys) >= _TENANT_CACHE_SIZE:
            self._tenant_keys.clear()
        key = self._tenant_keys[pair] = tenant_key(user_id, project_id)
        return key

    def validate(self, line: int, record: Any) -> ImportRow:
        """The record as a row to stage; ``ValueError`` with the reason it cannot be imported."""
        if not isinstance(record, dict):
            raise ValueError(f"record must be a JSON object, got {type(record).__name__}")
        key = self._tenant_key(record.get("user_id"), record.get("project_id"))
        if _is_absent(record.get("raw_data")):
            raise ValueError("raw_data is missing")
        raw = validate_raw_data(record["raw_data"], self.max_document_bytes)
        return ImportRow(
            line=line,
            user_id=record["user_id"],
            project_id=record["project_id"],
            tenant_key=key,
            external_id=_external_id(record.get("external_id")),
            raw_data=json.dumps(raw, ensure_ascii=False, separators=(",", ":")),
            created_at=_timestamp(record.get("created_at"), "created_at"),
            occurred_at=_timestamp(record.get("occurred_at"), "occurred_at"),
        )
