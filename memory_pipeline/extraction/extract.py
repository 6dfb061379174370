"""``raw_data`` JSON → the text that is embedded and searched (DESIGN §2b).

One entry point, :func:`extract_memory`. It unwraps the seed's ``memory_log`` wrapper, picks the
shape, lets that shape's module write its text pieces, and joins them with newlines under the
``MAX_SEARCH_TEXT_CHARS`` cap. The shapes, in the order they are tried:

- conversation turn (``speaker``/``role`` + ``text``/``content``, conversation.py):
  ``[8 May 2023] Caroline: Hey Mel! (photo: a photo of a lake)`` → ``conversation_turn``;
- stored conversation (``conversation``/``messages``: a list of turns, conversation.py):
  ``[19 November 2025] Conversation (gpt-4)`` then ``role: text`` per turn → ``conversation_turn``;
- note (``content``/``text`` without work-log fields, note.py): ``Task: title.``, ``Date: day.``,
  the note, ``Tags: ….``, other fields as key paths → ``note``;
- work log (``task``/``summary``/``root_cause``/``solution``/``gotchas``/``lesson``, no
  ``speaker``; work_log.py): ``Task:``, ``Component:``, ``Date:``, ``Summary:``,
  ``Root cause:``, ``Lesson:``, ``Solution:``, ``Key changes:``, ``Gotchas:``, ``Tags:``, ... →
  ``work_log``;
- anything else: ``Date: day.`` then ``a.b[2].c: value`` lines (key_paths.py) → ``other``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from memory_pipeline.extraction.clean import clean_label
from memory_pipeline.extraction.conversation import (
    is_conversation,
    is_conversation_turn,
    render_conversation,
    render_conversation_turn,
)
from memory_pipeline.extraction.dates import find_occurred_at, find_time_text, format_day
from memory_pipeline.extraction.key_paths import (
    MAX_KEY_PATH_DEPTH,
    has_string_content,
    key_path_lines,
)
from memory_pipeline.extraction.model import MAX_SEARCH_TEXT_CHARS, ExtractedMemory, MemoryType
from memory_pipeline.extraction.note import is_note, render_note
from memory_pipeline.extraction.segments import sentence
from memory_pipeline.extraction.work_log import is_work_log, render_work_log

#: The key under which the seed's API wraps a memory:
#: ``{user_id, project_id, session_id, datetime, memory_log: {...}}``.
WRAPPER_KEY = "memory_log"
#: Wrappers inside wrappers are unwrapped this many times at most.
MAX_WRAPPER_DEPTH = 4

_Renderer = Callable[[Mapping[str, Any], str | None], Iterable[str]]


def _render_other(document: Mapping[str, Any], day: str | None) -> Iterator[str]:
    """Unknown shapes: the day, then every leaf as ``key.path[i]: value`` (bounded)."""
    if day:
        yield f"Date: {sentence(day)}"
    yield from key_path_lines(document)


# Checked in this order: a speaker makes a turn even when a turn also carries a task, and a
# note's single text beats the work-log reading of a lone ``task`` title.
_SHAPES: tuple[tuple[Callable[[Mapping[str, Any]], bool], MemoryType, _Renderer], ...] = (
    (is_conversation_turn, "conversation_turn", render_conversation_turn),
    # A stored conversation is a run of turns: filtering by conversation_turn should find it.
    (is_conversation, "conversation_turn", render_conversation),
    (is_note, "note", render_note),
    (is_work_log, "work_log", render_work_log),
)


def unwrap(raw_data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the wrapped memory with its wrappers' other fields added where it lacks them,
    and the layers innermost first (where the memory's own time is looked for, in order).

    Identifiers of the wrapper (``user_id``, ``session_id``, ...) come along as fields but are
    never written as text; the row's own columns, not ``raw_data``, decide the tenant.
    """
    layers = [raw_data]
    while len(layers) <= MAX_WRAPPER_DEPTH:
        inner = layers[-1].get(WRAPPER_KEY)
        if not isinstance(inner, dict) or not inner:
            break
        layers.append(inner)
    document = dict(layers[-1])
    for layer in reversed(layers[:-1]):
        for key, value in layer.items():
            if key != WRAPPER_KEY and key not in document:
                document[key] = value
    return document, layers[::-1]


def _join_under_cap(pieces: Iterable[str]) -> tuple[str, bool]:
    """Join non-empty pieces with newlines; stop once past the cap and cut there.

    Stopping early keeps a million-turn conversation as cheap as a short one: what lies past
    the cap would be cut anyway.
    """
    kept: list[str] = []
    size = -1  # the first piece has no newline before it
    for piece in pieces:
        if not piece:
            continue
        kept.append(piece)
        size += len(piece) + 1
        if size > MAX_SEARCH_TEXT_CHARS:
            break
    text = "\n".join(kept)
    if len(text) <= MAX_SEARCH_TEXT_CHARS:
        return text, False
    return text[:MAX_SEARCH_TEXT_CHARS], True


def _extract(raw_data: Any) -> ExtractedMemory:
    if not isinstance(raw_data, dict):
        kind = "null" if raw_data is None else type(raw_data).__name__
        return ExtractedMemory("", "other", skip_reason=f"raw_data is JSON {kind}, not an object")
    if not raw_data:
        return ExtractedMemory("", "other", skip_reason="raw_data is an empty object")
    document, layers = unwrap(raw_data)
    memory_type: MemoryType = "other"
    render: _Renderer = _render_other
    for matches, shape_type, shape_render in _SHAPES:
        if matches(document):
            memory_type, render = shape_type, shape_render
            break
    occurred_at = find_occurred_at(*layers)
    if not has_string_content(document):
        return ExtractedMemory(
            "",
            memory_type,
            occurred_at,
            skip_reason=(
                "raw_data holds no string to embed (identifiers, and values nested deeper than "
                f"{MAX_KEY_PATH_DEPTH} levels, do not count)"
            ),
        )
    # The day as people write it; a time nobody could parse ("last Tuesday") is kept verbatim.
    time_text = find_time_text(*layers)
    day = format_day(occurred_at) if occurred_at else time_text and clean_label(time_text)
    text, truncated = _join_under_cap(render(document, day))
    if not text:
        return ExtractedMemory(
            "",
            memory_type,
            occurred_at,
            skip_reason=f"raw_data has no text to embed as {memory_type}",
        )
    return ExtractedMemory(text, memory_type, occurred_at, truncated=truncated)


def extract_memory(raw_data: Any) -> ExtractedMemory:
    """Return the searchable text of one memory's ``raw_data`` (any JSON value).

    Promises: never raises; the same input always gives the same output; ``text`` is at most
    ``MAX_SEARCH_TEXT_CHARS`` characters, encodes as UTF-8 and has no control characters other
    than newline; ``truncated`` is True exactly when text past that cap was cut; ``text`` is ""
    exactly when ``skip_reason`` says why there is nothing to embed; ``occurred_at`` is the
    memory's own time (UTC, aware) when ``raw_data`` carries one.
    """
    try:
        return _extract(raw_data)
    except Exception as error:  # noqa: BLE001 - the promise is "never raises"; say what happened
        # A bug here must not stop a batch; the row is skipped with the reason, and the tests
        # (golden files, hypothesis) are what keep this branch unused.
        return ExtractedMemory(
            "", "other", skip_reason=f"extraction failed: {type(error).__name__}"
        )
