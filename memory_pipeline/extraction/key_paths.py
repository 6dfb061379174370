"""The JSON's own words with their key paths: ``a.b[2].c: value``, for shapes nobody planned.

The walk uses an explicit stack and stops at fixed depth, node and leaf counts, so a document
10,000 levels deep or with a million keys costs bounded time and never hits RecursionError.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

from memory_pipeline.extraction.clean import clean_label, clean_text

#: Containers deeper than this are not entered: meaning rarely lives 32 levels down, and the
#: key path to it would be longer than the value.
MAX_KEY_PATH_DEPTH = 32

#: At most this many JSON nodes (objects, arrays, values) are visited per document.
MAX_KEY_PATH_NODES = 20_000

#: At most this many ``path: value`` lines come out of one document.
MAX_KEY_PATH_LEAVES = 500

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


def iter_key_paths(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(key path, text)`` for the string, number and boolean leaves of ``value``.

    Order follows the document. Identifier keys are skipped; a list of plain values is one
    leaf whose text joins its items (see ``inline_items``). Bounded by ``MAX_KEY_PATH_DEPTH``,
    ``MAX_KEY_PATH_NODES`` and ``MAX_KEY_PATH_LEAVES``; never raises on JSON input.
    """
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    nodes = 0
    leaves = 0
    while stack and nodes < MAX_KEY_PATH_NODES and leaves < MAX_KEY_PATH_LEAVES:
        node_path, node, depth = stack.pop()
        nodes += 1
        if isinstance(node, dict):
            if depth >= MAX_KEY_PATH_DEPTH:
                continue
            children = [
                (_child_path(node_path, str(key)), child, depth + 1)
                for key, child in islice(node.items(), MAX_KEY_PATH_NODES)
                if not is_identifier_key(str(key))
            ]
            stack.extend(reversed(children))  # reversed: pop() then yields document order
        elif isinstance(node, list):
            if depth >= MAX_KEY_PATH_DEPTH:
                continue
            head = node[:MAX_KEY_PATH_NODES]
            if head and all(is_scalar(item) for item in head):
                text = inline_items(node)
                if text:
                    leaves += 1
                    yield node_path, text
                continue
            stack.extend(
                (f"{node_path}[{index}]", child, depth + 1)
                for index, child in reversed(list(enumerate(head)))
            )
        else:
            text = scalar_text(node)
            if text:
                leaves += 1
                yield node_path, text


def has_string_content(value: Any) -> bool:
    """Return True when ``value`` holds a non-blank string outside identifier keys.

    Numbers and booleans alone are not worth embedding. Bounded like ``iter_key_paths``.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack and nodes < MAX_KEY_PATH_NODES:
        node, depth = stack.pop()
        nodes += 1
        if isinstance(node, str):
            if clean_text(node):
                return True
        elif depth < MAX_KEY_PATH_DEPTH:
            if isinstance(node, dict):
                stack.extend(
                    (child, depth + 1)
                    for key, child in islice(node.items(), MAX_KEY_PATH_NODES)
                    if not is_identifier_key(str(key))
                )
            elif isinstance(node, list):
                stack.extend((child, depth + 1) for child in node[:MAX_KEY_PATH_NODES])
    return False


def key_path_lines(value: Any, path: str = "") -> Iterator[str]:
    """Yield ``path: text`` lines for the leaves of ``value`` (see ``iter_key_paths``)."""
    for leaf_path, text in iter_key_paths(value, path):
        yield f"{leaf_path}: {text}" if leaf_path else text
