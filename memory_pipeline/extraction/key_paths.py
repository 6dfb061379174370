"""The JSON's own words with their key paths: ``a.b[2].c: value``, for shapes nobody planned.

The walk is lazy and iterative (a stack of iterators, no recursion) and stops at a fixed depth
and node count, so a document 10,000 levels deep or with a million keys costs bounded time and
never hits RecursionError. The caller stops reading once its text is past the text cap, so the
number of lines is bounded by that cap: only what passes it is cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from memory_pipeline.extraction.clean import clean_label, clean_text

#: Containers deeper than this are not entered: meaning rarely lives 32 levels down, and the
#: key path to it would be longer than the value.
MAX_KEY_PATH_DEPTH = 32

#: At most this many JSON nodes (members, items) are visited per walk: bounds the work on
#: documents that are mostly nulls, numbers-free ids or empty strings, which give no text.
#: Well above what fills the text cap, so text-bearing documents reach the cap first.
MAX_KEY_PATH_NODES = 100_000

#: A list of plain values is written on one line; past this many items the rest is counted.
MAX_INLINE_ITEMS = 20

# Identifiers (`id`, `user_id`, `sessionId`, `dia_id`, `uuid`, ...) are for lookups, not
# meaning: they only add noise to an embedding, and ids inside raw_data never name the tenant.
_SNAKE_IDENTIFIER_KEY = re.compile(r"(?:^|_)(?:ids?|uuids?)$", re.IGNORECASE)
_CAMEL_IDENTIFIER_KEY = re.compile(r"[a-z0-9](?:Ids?|IDs?|Uuids?|UUIDs?)$")


def is_identifier_key(key: str) -> bool:
    """Return True when ``key`` names an identifier (never part of search text)."""
    return bool(_SNAKE_IDENTIFIER_KEY.search(key) or _CAMEL_IDENTIFIER_KEY.search(key))


def scalar_text(value: Any) -> str | None:
    """Return a JSON scalar as clean text (booleans as true/false), or None for anything else."""
    if isinstance(value, str):
        return clean_text(value) or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return repr(value)
        except ValueError:  # an int past Python's 4,300-digit str() limit
            return None
    return None


def is_scalar(value: Any) -> bool:
    """Return True for JSON strings, numbers and booleans (null is not a value worth text)."""
    return isinstance(value, str | int | float)


def inline_items(items: list[Any], cap: int = MAX_INLINE_ITEMS) -> str:
    """Return up to ``cap`` plain values of ``items`` on one line, with "(+N more)" past the cap.

    Values are separated by ", " unless one of them holds a comma, then by "; ".
    """
    shown = [text for text in (scalar_text(item) for item in items[:cap]) if text]
    separator = "; " if any("," in text for text in shown) else ", "
    line = separator.join(shown)
    if len(items) > cap:
        line += f" (+{len(items) - cap} more)"
    return line


def _child_path(path: str, key: str) -> str:
    label = clean_label(key)
    return f"{path}.{label}" if path else label


def _children(path: str, node: dict[Any, Any] | list[Any]) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, child in node.items():
            key = str(key)
            if not is_identifier_key(key):
                yield _child_path(path, key), child
    else:
        for index, child in enumerate(node):
            yield f"{path}[{index}]", child


def _is_scalar_list(node: Any) -> bool:
    return isinstance(node, list) and bool(node) and all(is_scalar(item) for item in node)


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(key path, leaf)`` in document order, where a leaf is a JSON scalar or a
    non-empty list of scalars. Bounded by ``MAX_KEY_PATH_DEPTH`` and ``MAX_KEY_PATH_NODES``."""
    stack: list[Iterator[tuple[str, Any]]] = [iter([(path, value)])]
    nodes = 0
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        nodes += 1
        if nodes > MAX_KEY_PATH_NODES:
            return
        child_path, node = child
        if _is_scalar_list(node) or is_scalar(node):
            yield child_path, node
        elif isinstance(node, dict | list) and len(stack) <= MAX_KEY_PATH_DEPTH:
            stack.append(_children(child_path, node))


def iter_key_paths(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(key path, text)`` for the string, number and boolean leaves of ``value``.

    Order follows the document. Identifier keys are skipped; a list of plain values is one
    leaf whose text joins its items (see ``inline_items``). Bounded by ``MAX_KEY_PATH_DEPTH``
    and ``MAX_KEY_PATH_NODES``; lazy, so a caller that stops reading stops the walk.
    """
    for leaf_path, leaf in _leaves(value, path):
        text = inline_items(leaf) if isinstance(leaf, list) else scalar_text(leaf)
        if text:
            yield leaf_path, text


def has_string_content(value: Any) -> bool:
    """Return True when ``value`` holds a non-blank string outside identifier keys.

    Numbers and booleans alone are not worth embedding. Bounded like ``iter_key_paths``.
    """
    for _, leaf in _leaves(value, ""):
        for item in leaf if isinstance(leaf, list) else [leaf]:
            if isinstance(item, str) and clean_text(item):
                return True
    return False


def key_path_lines(value: Any, path: str = "") -> Iterator[str]:
    """Yield ``path: text`` lines for the leaves of ``value`` (see ``iter_key_paths``)."""
    for leaf_path, text in iter_key_paths(value, path):
        yield f"{leaf_path}: {text}" if leaf_path else text
