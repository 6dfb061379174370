"""A memory's own time: finding it in ``raw_data``, parsing it, and writing it for search."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

#: Keys that carry a memory's own time, most specific first: a conversation turn's session time
#: beats a storage timestamp, and ``created_at`` (when a record was written) comes last.
TIME_KEYS: tuple[str, ...] = (
    "occurred_at",
    "session_date_time",
    "datetime",
    "date_time",
    "timestamp",
    "date",
    "startTime",
    "start_time",
    "time",
    "created_at",
    "createdAt",
)

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_NUMBERS = (
    {name.lower(): number for number, name in enumerate(_MONTHS, start=1)}
    | {name[:3].lower(): number for number, name in enumerate(_MONTHS, start=1)}
    | {"sept": 9}
)

# LoCoMo's session times: "1:56 pm on 8 May, 2023".
_CLOCK_ON_DAY = re.compile(
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*(?P<half>[ap])\.?m\.?\s+on\s+"
    r"(?P<day>\d{1,2})\s+(?P<month>[a-z]+)\.?,?\s+(?P<year>\d{4})",
    re.IGNORECASE,
)
_DAY_MONTH_YEAR = re.compile(
    r"(?P<day>\d{1,2})\s+(?P<month>[a-z]+)\.?,?\s+(?P<year>\d{4})", re.IGNORECASE
)
_MONTH_DAY_YEAR = re.compile(
    r"(?P<month>[a-z]+)\.?\s+(?P<day>\d{1,2}),?\s+(?P<year>\d{4})", re.IGNORECASE
)
_EPOCH = re.compile(r"\d{9,13}(?:\.\d+)?")

#: Epoch numbers above this are milliseconds: as seconds they would lie past the year 5000.
_EPOCH_MILLISECONDS_ABOVE = 1e11

#: A time string longer than this is prose, not a time.
_MAX_TIME_STRING_CHARS = 64


def _aware(moment: datetime) -> datetime:
    # Naive times are taken as UTC; aware ones are moved to UTC so every stored time compares.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _from_epoch(number: float) -> datetime | None:
    # 0 and negative numbers are placeholders in practice (the seed's mental note has
    # startTime 0), not memories from 1970 or before.
    if not math.isfinite(number) or number <= 0:
        return None
    if number > _EPOCH_MILLISECONDS_ABOVE:
        number /= 1000
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _from_match(match: re.Match[str]) -> datetime | None:
    parts = match.groupdict()
    month = _MONTH_NUMBERS.get(parts["month"].lower())
    if month is None:
        return None
    hour = int(parts.get("hour") or 0)
    if parts.get("half"):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if parts["half"].lower() == "p" else 0)
    try:
        return datetime(
            int(parts["year"]),
            month,
            int(parts["day"]),
            hour,
            int(parts.get("minute") or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _from_string(value: str) -> datetime | None:
    value = value.strip()
    if not value or len(value) > _MAX_TIME_STRING_CHARS:
        return None
    if _EPOCH.fullmatch(value):
        return _from_epoch(float(value))
    try:
        return _aware(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        pass
    for pattern in (_CLOCK_ON_DAY, _DAY_MONTH_YEAR, _MONTH_DAY_YEAR):
        match = pattern.fullmatch(value)
        if match:
            return _from_match(match)
    return None


def parse_time(value: Any) -> datetime | None:
    """Return ``value`` as a timezone-aware UTC datetime, or None when it is not a time.

    Understands ISO 8601 strings (naive ones are UTC), LoCoMo's "1:56 pm on 8 May, 2023",
    "8 May 2023" / "May 8, 2023", and epoch seconds or milliseconds as numbers or digit strings.
    Never raises.
    """
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return _from_epoch(float(value))
        if isinstance(value, str):
            return _from_string(value)
    except (ValueError, OverflowError):
        return None
    return None


def find_occurred_at(*documents: Mapping[str, Any]) -> datetime | None:
    """Return the first parseable time under ``TIME_KEYS`` in ``documents``, searched in order."""
    for document in documents:
        for key in TIME_KEYS:
            if key in document:
                moment = parse_time(document[key])
                if moment is not None:
                    return moment
    return None


def find_time_text(*documents: Mapping[str, Any]) -> str | None:
    """Return the first non-empty string under ``TIME_KEYS``, parseable or not.

    For a time people wrote in their own words ("last Tuesday"): search text keeps it verbatim
    where it cannot be parsed.
    """
    for document in documents:
        for key in TIME_KEYS:
            value = document.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return None


def format_day(moment: datetime) -> str:
    """Return the day of ``moment`` as people write and ask about it: "8 May 2023"."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"
