"""Conversations: one turn (``speaker`` + ``text``), or a stored conversation (a list of turns).

People search conversations by who said it and when ("what did Caroline say in May?"), so a
turn's text always carries its day and speaker: ``[8 May 2023] Caroline: Hey Mel! (photo: a
photo of a lake)``. A turn's bookkeeping (``dia_id``, ``img_url``, the image search ``query``,
``session``, ``message_id``) is not what anyone said and stays out of the text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from memory_pipeline.extraction.clean import clean_label, clean_text
from memory_pipeline.extraction.dates import TIME_KEYS, find_occurred_at, format_day
from memory_pipeline.extraction.key_paths import key_path_lines
from memory_pipeline.extraction.segments import text_of

_T = TypeVar("_T")

#: Keys naming who speaks in a turn, in order of preference.
SPEAKER_KEYS: tuple[str, ...] = ("speaker", "role", "author", "sender")
#: Keys holding what was said.
TURN_TEXT_KEYS: tuple[str, ...] = ("text", "content", "message")
#: Keys holding a description of a shared image (LoCoMo's BLIP captions).
CAPTION_KEYS: tuple[str, ...] = ("blip_caption", "caption", "image_caption")
#: Keys holding a stored conversation's list of turns.
CONVERSATION_KEYS: tuple[str, ...] = ("conversation", "messages", "turns", "dialogue")
#: Keys naming a stored conversation (written in its first line).
_TITLE_KEYS: tuple[str, ...] = ("title", "name", "subject")

#: A turn's bookkeeping: where its image lives, the query that found the image, its session
#: number. Other unknown keys of a turn are written after it as key paths.
TURN_METADATA_KEYS = frozenset({"img_url", "image_url", "url", "query", "re-download", "session"})

# Everything a turn's renderer writes itself, or deliberately leaves out.
_TURN_HANDLED = frozenset(
    {*SPEAKER_KEYS, *TURN_TEXT_KEYS, *CAPTION_KEYS, *TIME_KEYS, *TURN_METADATA_KEYS}
)
# Everything a stored conversation's renderer writes itself, or deliberately leaves out.
_CONVERSATION_HANDLED = frozenset({*CONVERSATION_KEYS, *_TITLE_KEYS, "model", *TIME_KEYS})


def _first_of(document: Mapping[str, Any], keys: tuple[str, ...], kind: type[_T]) -> _T | None:
    """The first value under ``keys`` that is a ``kind``."""
    for key in keys:
        value = document.get(key)
        if isinstance(value, kind):
            return value
    return None


def _first_string(document: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    return _first_of(document, keys, str)


def is_conversation_turn(document: Mapping[str, Any]) -> bool:
    """Return True when ``document`` names a speaker and holds what was said (or shown)."""
    return _first_string(document, SPEAKER_KEYS) is not None and (
        _first_string(document, TURN_TEXT_KEYS) is not None
        or _first_string(document, CAPTION_KEYS) is not None
    )


def turn_text(turn: Mapping[str, Any], day: str | None) -> str:
    """Return one turn as ``[day] speaker: text (photo: caption)``; "" when nothing was said.

    ``day`` is omitted when None; the speaker is omitted when the turn names none.
    """
    said = clean_text(_first_string(turn, TURN_TEXT_KEYS) or "")
    caption = clean_text(_first_string(turn, CAPTION_KEYS) or "")
    if caption:
        said = f"{said} (photo: {caption})" if said else f"(photo: {caption})"
    if not said:
        return ""
    speaker = clean_label(_first_string(turn, SPEAKER_KEYS) or "")
    line = f"{speaker}: {said}" if speaker else said
    return f"[{day}] {line}" if day else line


def render_conversation_turn(document: Mapping[str, Any], day: str | None) -> Iterator[str]:
    """Yield a conversation turn's text (see ``turn_text``), then any fields it does not know
    as key paths (bookkeeping, identifiers and times excepted)."""
    line = turn_text(document, day)
    if line:
        yield line
        yield from key_path_lines({k: v for k, v in document.items() if k not in _TURN_HANDLED})


def _turns(document: Mapping[str, Any]) -> list[Any] | None:
    return _first_of(document, CONVERSATION_KEYS, list)


def is_conversation(document: Mapping[str, Any]) -> bool:
    """Return True when ``document`` holds a list of turns under a ``CONVERSATION_KEYS`` key."""
    turns = _turns(document)
    return bool(turns) and any(
        isinstance(turn, str)
        or (isinstance(turn, dict) and _first_string(turn, TURN_TEXT_KEYS) is not None)
        for turn in turns
    )


def render_conversation(document: Mapping[str, Any], day: str | None) -> Iterator[str]:
    """Yield a stored conversation's text: a first line naming it, then one ``role: text``
    piece per turn in order, then any other fields as key paths.

    The first line is ``[day] Conversation (model): title``, each part present only when the
    document has it, and only when some turn has text. A turn with its own time gets its own
    ``[day]``.
    """
    header = "Conversation"
    model = clean_label(_first_string(document, ("model",)) or "")
    if model:
        header += f" ({model})"
    title = clean_label(_first_string(document, _TITLE_KEYS) or "")
    if title:
        header += f": {title}"
    header = f"[{day}] {header}" if day else header
    said_anything = False
    for turn in _turns(document) or []:
        if isinstance(turn, dict):
            moment = find_occurred_at(turn)
            line = turn_text(turn, format_day(moment) if moment else None)
        else:
            line = text_of(turn)
        if line and not said_anything:
            # The first line is written only above turns: a conversation in which nobody
            # said anything is not worth embedding just for its model name.
            said_anything = True
            yield header
        yield line
    rest = {key: value for key, value in document.items() if key not in _CONVERSATION_HANDLED}
    yield from key_path_lines(rest)
