"""Free notes: an object whose meaning is one string under ``content`` (or ``text``, ...).

The seed's API memory logs (``task`` + ``content`` + ``tags`` + ``metadata``) and mental notes
(``sessionId``, ``startTime``, ``content``) are notes: a title, the day, the note itself, then
its tags and any other fields as key paths.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from memory_pipeline.extraction.clean import clean_text
from memory_pipeline.extraction.dates import TIME_KEYS
from memory_pipeline.extraction.key_paths import key_path_lines
from memory_pipeline.extraction.segments import inline_list, labelled, sentence
from memory_pipeline.extraction.work_log import MAX_TAGS, WORK_LOG_KEYS

#: Keys holding a note's text, in order of preference.
NOTE_TEXT_KEYS: tuple[str, ...] = ("content", "text", "note", "body")
#: Keys holding a note's title, written first with their own label.
_TITLE_KEYS: tuple[tuple[str, str], ...] = (
    ("task", "Task"),
    ("title", "Title"),
    ("subject", "Subject"),
)

# Work-log keys other than ``task``: a note may have a title called task, but a summary or a
# root cause makes it a work log whose content is one field among many.
_WORK_LOG_ONLY_KEYS = WORK_LOG_KEYS - {"task"}


def _note_key(document: Mapping[str, Any]) -> str | None:
    for key in NOTE_TEXT_KEYS:
        value = document.get(key)
        if isinstance(value, str) and value.strip():
            return key
    return None


def is_note(document: Mapping[str, Any]) -> bool:
    """Return True when ``document`` has note text and neither a speaker nor work-log fields."""
    return (
        _note_key(document) is not None
        and "speaker" not in document
        and not any(document.get(key) not in (None, "", [], {}) for key in _WORK_LOG_ONLY_KEYS)
    )


def render_note(document: Mapping[str, Any], day: str | None) -> Iterator[str]:
    """Yield a note's text pieces: ``Task: title.``, ``Date: day.``, the note text unlabelled,
    ``Tags: ….``, then its other fields (identifiers and times excepted) as key paths."""
    handled = {"tags", *TIME_KEYS}
    for key, label in _TITLE_KEYS:
        if key in document:
            handled.add(key)
            yield labelled(label, document[key])
    if day:
        yield f"Date: {sentence(day)}"
    note_key = _note_key(document)
    if note_key is not None:
        handled.add(note_key)
        yield clean_text(document[note_key])
    if "tags" in document:
        yield inline_list("Tags", document["tags"], MAX_TAGS)
    yield from key_path_lines({k: v for k, v in document.items() if k not in handled})
