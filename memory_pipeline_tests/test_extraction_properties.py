"""Text extraction holds its promises for JSON nobody planned for (hypothesis)."""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_pipeline.extraction import MAX_SEARCH_TEXT_CHARS, MEMORY_TYPES, extract_memory

# Any code point, lone surrogates and control characters included.
_ANY_CHARACTER = st.characters(exclude_categories=[])
_TEXT = st.one_of(
    st.text(_ANY_CHARACTER, max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "שלום", "e\u0301", "👩🏽‍💻", "\u202e", "\r\n"]),
    # Huge strings, built by repetition so they are cheap to generate.
    st.builds(
        lambda piece, times: piece * times,
        st.text(_ANY_CHARACTER, min_size=1, max_size=4),
        st.integers(1, 40_000),
    ),
)
# Keys the shape detection and the renderers look at, so every path through them is taken.
_KNOWN_KEYS = st.sampled_from(
    [
        "task", "summary", "root_cause", "solution", "approach", "key_changes", "gotchas", "issue",
        "lesson", "tags", "code_context", "future_planning", "architecture_decisions", "outcomes",
        "speaker", "role", "text", "content", "blip_caption", "memory_log", "conversation",
        "session_date_time", "datetime", "date", "startTime", "created_at", "user_id", "model",
    ]
)  # fmt: skip
_TIMES = st.one_of(
    st.sampled_from(["1:56 pm on 8 May, 2023", "2025-11-13", "2025-11-13T10:00:00+02:00"]),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.integers(-(2**63), 2**63),
    st.floats(),
)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT, _TIMES
)


def _json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(st.one_of(_KNOWN_KEYS, _TEXT), children, max_size=6),
        ),
        max_leaves=15,
    )


JSON = _json_values(_SCALARS)
JSON_OBJECTS = st.dictionaries(st.one_of(_KNOWN_KEYS, _TEXT), JSON, max_size=6)

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check_promises(raw: Any) -> None:
    result = extract_memory(raw)
    assert result.memory_type in MEMORY_TYPES
    assert len(result.text) <= MAX_SEARCH_TEXT_CHARS
    assert (result.text == "") == (result.skip_reason is not None)
    assert not (result.skip_reason or "").startswith("extraction failed"), result.skip_reason
    result.text.encode("utf-8")  # no lone surrogates: Postgres would reject the row
    assert not any(
        unicodedata.category(character) == "Cc" and character not in "\n\t"
        for character in result.text
    )
    assert result.text == result.text.lstrip()
    if result.occurred_at is not None:
        assert result.occurred_at.tzinfo is not None
    if result.truncated:
        assert len(result.text) == MAX_SEARCH_TEXT_CHARS
    else:
        assert result.text == result.text.rstrip()
    assert extract_memory(raw) == result  # deterministic


@_SETTINGS
@given(JSON)
def test_any_json_value_keeps_the_promises(raw: Any) -> None:
    _check_promises(raw)


@_SETTINGS
@given(JSON_OBJECTS)
def test_any_json_object_keeps_the_promises(raw: dict[Any, Any]) -> None:
    _check_promises(raw)


@_SETTINGS
@given(JSON_OBJECTS, JSON_OBJECTS)
def test_wrapped_objects_keep_the_promises(outer: dict[Any, Any], inner: dict[Any, Any]) -> None:
    _check_promises({**outer, "memory_log": inner})


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3000), _KNOWN_KEYS, st.booleans())
def test_deep_nesting_keeps_the_promises(depth: int, key: str, use_lists: bool) -> None:
    deep: Any = "bottom"
    for _ in range(depth):
        deep = [deep] if use_lists else {key: deep}
    _check_promises({key: deep})
