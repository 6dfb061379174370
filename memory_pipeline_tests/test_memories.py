"""The rules of a memory (``memory_pipeline.memories``), shared by every front door."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from memory_pipeline.imports.records import RecordValidator
from memory_pipeline.memories import (
    validate_external_id,
    validate_occurred_at,
    validate_raw_data,
)


def test_a_naive_time_is_taken_as_utc_and_an_offset_is_kept() -> None:
    assert validate_occurred_at(datetime(2025, 1, 2, 3, 4)) == datetime(
        2025, 1, 2, 3, 4, tzinfo=UTC
    )
    plus_two = timezone(timedelta(hours=2))
    assert validate_occurred_at("2025-01-02T03:04:00+02:00") == datetime(
        2025, 1, 2, 3, 4, tzinfo=plus_two
    )


@pytest.mark.parametrize("bad", ["last tuesday", 12345, datetime.max.isoformat() + "-23:59"])
def test_a_time_that_is_not_one_is_a_one_line_error_naming_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match="^occurred_at ") as info:
        validate_occurred_at(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", ["", "x" * 1025, "a\x00b", "\ud800", 7])
def test_an_external_id_outside_the_rule_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="external_id"):
        validate_external_id(bad)


def test_raw_data_given_as_json_text_is_parsed() -> None:
    assert validate_raw_data('{"content": "a note"}', 100) == {"content": "a note"}


def test_the_import_refuses_what_create_memory_log_refuses() -> None:
    """One rule, two doors: the import's reason is the rule's own message."""
    validator = RecordValidator(max_document_bytes=64)
    record = {"user_id": "u", "project_id": "p", "raw_data": {"content": "x" * 100}}
    with pytest.raises(ValueError) as by_rule:
        validate_raw_data(record["raw_data"], 64)
    with pytest.raises(ValueError) as by_import:
        validator.validate(1, record)
    assert str(by_import.value) == str(by_rule.value)
