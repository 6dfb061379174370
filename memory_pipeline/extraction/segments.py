"""Labelled segments of search text: ``Label: value.`` lines and ``- item`` lists.

Each function returns one piece of text (possibly several lines) or "" when the value holds
nothing worth writing, so renderers can emit pieces without checking every field's type.
"""

from __future__ import annotations

from typing import Any

from memory_pipeline.extraction.clean import clean_label
from memory_pipeline.extraction.key_paths import (
    MAX_INLINE_ITEMS,
    inline_items,
    is_identifier_key,
    is_scalar,
    key_path_lines,
    scalar_text,
)

# A value that already ends like a sentence gets no extra period.
_SENTENCE_ENDS = (".", "!", "?", ":", ";", "…", ".)", ".]", '."', "!)", "?)")


def sentence(text: str) -> str:
    """Return ``text`` ending in sentence punctuation, so segments read (and embed) as sentences."""
    return text if not text or text.endswith(_SENTENCE_ENDS) else text + "."


def humanise_key(key: Any) -> str:
    """Return a JSON key as words: ``performance_impact`` → ``performance impact``."""
    return clean_label(str(key)).replace("_", " ").strip()


def text_of(value: Any) -> str:
    """Return any JSON value as one text: a scalar as itself, a list of scalars on one line,
    other containers as ``path: value`` parts joined by "; " (bounded, see key_paths)."""
    if is_scalar(value):
        return scalar_text(value) or ""
    if isinstance(value, list) and value and all(is_scalar(item) for item in value):
        return inline_items(value)
    return "; ".join(key_path_lines(value))


def labelled(label: str, value: Any) -> str:
    """Return ``Label: value.``, or "" when ``value`` has no text."""
    text = text_of(value)
    return f"{label}: {sentence(text)}" if text else ""


def inline_list(label: str, value: Any, cap: int = MAX_INLINE_ITEMS) -> str:
    """Return ``Label: a, b, c (+N more).`` for a list of short values (tags, file names)."""
    if isinstance(value, list) and all(is_scalar(item) for item in value):
        text = inline_items(value, cap)
        return f"{label}: {sentence(text)}" if text else ""
    return bullet_list(label, value, cap)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _bullets(label: str, texts: list[str], more: int) -> str:
    lines = [f"- {sentence(text)}" for text in texts if text]
    if not lines:
        return ""
    if more > 0:
        lines.append(f"- (+{more} more)")
    return "\n".join([f"{label}:", *lines])


def bullet_list(label: str, value: Any, cap: int) -> str:
    """Return ``Label:`` followed by one ``- item`` line for each of the first ``cap`` items,
    and ``- (+N more)`` when the list was longer; "" when no item has text."""
    items = _items(value)
    return _bullets(label, [text_of(item) for item in items[:cap]], len(items) - cap)


def mapping_list(label: str, value: Any, cap: int) -> str:
    """Return ``Label:`` with ``- name: text`` lines for an object of named entries (such as
    ``architecture_decisions`` or ``outcomes``); lists fall back to ``bullet_list``."""
    if not isinstance(value, dict):
        return bullet_list(label, value, cap)
    entries = [(key, item) for key, item in value.items() if not is_identifier_key(str(key))]
    texts = []
    for key, item in entries[:cap]:
        text = text_of(item)
        texts.append(f"{humanise_key(key)}: {text}" if text else "")
    return _bullets(label, texts, len(entries) - cap)
