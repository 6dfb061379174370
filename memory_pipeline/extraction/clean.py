"""Cleaning of the strings that go into search text.

Every string that reaches ``search_text`` passes through :func:`clean_text`, so the stored text
is valid UTF-8 (Postgres rejects NUL and lone surrogates), free of control characters, and has
no whitespace runs that would only waste the embedding model's token window.
"""

from __future__ import annotations

import re
import unicodedata

from memory_pipeline.extraction.model import MAX_SEARCH_TEXT_CHARS

#: Input is cleaned in windows of this many characters, stopping once the cleaned output passes
#: the text cap: a 100 MB string costs one window's work more than a 32 KB one, not 100 MB.
CLEAN_WINDOW_CHARS = 4 * MAX_SEARCH_TEXT_CHARS

#: Longest label (a speaker's name, a key in a key path) kept before it is cut with "…": labels
#: are names, and a 10 KB "name" is content in the wrong place.
MAX_LABEL_CHARS = 100


def _translation_table() -> dict[int, str | None]:
    """Map each character that must not reach search text to its replacement (None: drop)."""
    table: dict[int, str | None] = {}
    # Every control (Cc), space separator (Zs) and line/paragraph separator (Zl, Zp) lies
    # below U+3001, so scanning that range finds them all without walking all of Unicode.
    for code in range(0x3001):
        category = unicodedata.category(chr(code))
        if category == "Cc" and chr(code) not in "\n\t":
            table[code] = None  # NUL, C0/C1 controls; \r is turned into \n before translation
        elif category in ("Zl", "Zp"):
            table[code] = "\n"
        elif category == "Zs" and code != 0x20:
            table[code] = " "  # no-break and other spaces: the model sees a plain space anyway
    for code in range(0xD800, 0xE000):
        table[code] = None  # lone surrogates cannot be encoded as UTF-8
    table[0xFEFF] = None  # byte-order mark / zero-width no-break space
    return table


# A constant built once at import (never mutated), like a compiled regex.
_TRANSLATION = _translation_table()
_HORIZONTAL_SPACE = re.compile(r"[ \t]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def _normalise_whitespace(text: str) -> str:
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    # One blank line (a paragraph break) carries meaning; more is layout.
    return _BLANK_LINES.sub("\n\n", text).strip()


def _clean_window(window: str) -> str:
    window = window.replace("\r\n", "\n").replace("\r", "\n").translate(_TRANSLATION)
    return unicodedata.normalize("NFC", window)


def clean_text(value: str) -> str:
    """Return ``value`` as clean search text.

    Promises: no control characters other than newline, no lone surrogates (the result encodes
    as UTF-8), NFC normalised, runs of spaces/tabs collapsed to one space, no spaces at line
    ends, at most one blank line in a row, no leading/trailing whitespace. Content is never
    dropped before the result is longer than ``MAX_SEARCH_TEXT_CHARS``, so the caller's cap
    (and its ``truncated`` flag) decides what is cut.
    """
    if len(value) <= CLEAN_WINDOW_CHARS:
        return _normalise_whitespace(_clean_window(value))
    pieces: list[str] = []
    size = 0
    start = 0
    while start < len(value):
        end = start + CLEAN_WINDOW_CHARS
        if value[end - 1 : end] == "\r":
            end += 1  # keep a "\r\n" pair in one window so it becomes one newline
        piece = _clean_window(value[start:end])
        pieces.append(piece)
        start = end
        # Whitespace collapses across windows, so an estimate past the cap is confirmed on the
        # joined text before the rest of the input is left unread.
        size += len(_normalise_whitespace(piece))
        if size > MAX_SEARCH_TEXT_CHARS:
            joined = _normalise_whitespace("".join(pieces))
            if len(joined) > MAX_SEARCH_TEXT_CHARS:
                return joined
            size = len(joined)
    return _normalise_whitespace("".join(pieces))


def clean_label(value: str) -> str:
    """Return ``value`` cleaned to one line of at most ``MAX_LABEL_CHARS`` characters."""
    label = " ".join(clean_text(value[: 4 * MAX_LABEL_CHARS]).split())
    if len(label) > MAX_LABEL_CHARS:
        return label[: MAX_LABEL_CHARS - 1] + "…"
    return label
