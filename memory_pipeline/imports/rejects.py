"""The reject file of an import: one JSON line per record that could not be imported (DESIGN §5)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _json_line(entry: dict[str, Any]) -> str:
    try:
        json.dumps(entry, allow_nan=False, default=_jsonable)
    except ValueError:  # NaN or infinity, which JSON cannot hold: keep the record as text
        entry = {**entry, "record": repr(entry["record"])}
    text = json.dumps(entry, ensure_ascii=False, default=_jsonable)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from undecodable input: escape them
        return json.dumps(entry, ensure_ascii=True, default=_jsonable)
    return text


class RejectFile:
    """Rejected records of one import, in ``rejects_dir/import-<UTC time>-<id>.jsonl``.

    Each line is ``{"line": N, "reason": "...", "record": ..., "file": "..."}``; the file is
    created with the first reject, so an import without rejects leaves none.
    """

    def __init__(self, rejects_dir: Path) -> None:
        self.rejects_dir = rejects_dir
        self.path: Path | None = None
        self.count = 0
        self._file: IO[str] | None = None

    def add(self, source: Path, line: int, reason: str, record: Any) -> None:
        """Append one rejected record."""
        if self._file is None:
            self.rejects_dir.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            self.path = self.rejects_dir / f"import-{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
            self._file = self.path.open("x", encoding="utf-8")
        entry = {"line": line, "reason": reason, "record": record, "file": str(source)}
        self._file.write(_json_line(entry) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RejectFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
