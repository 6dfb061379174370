"""Coding-agent work logs: ``task``, ``summary``, ``root_cause``, ``solution``, ``gotchas``, ...

The text puts what a searcher most likely asks about first (what was done, what went wrong, why,
what was learned), so the first chunk embedded carries it; then how it was solved, the pitfalls,
the vocabulary (tags, concepts, patterns), plans, and bookkeeping. Fields this module does not
know are written last as key paths, so nothing an agent wrote is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from memory_pipeline.extraction.dates import TIME_KEYS
from memory_pipeline.extraction.key_paths import key_path_lines, scalar_text
from memory_pipeline.extraction.segments import (
    bullet_list,
    inline_list,
    labelled,
    mapping_list,
    sentence,
    text_of,
)

#: Keys that make an object a work log (when it has no ``speaker``).
WORK_LOG_KEYS = frozenset({"task", "summary", "root_cause", "solution", "gotchas", "lesson"})

# List caps: how many items of each list field are written before "(+N more)". Generous for the
# fields that carry the most meaning (changes, pitfalls, vocabulary), tighter for plans and
# bookkeeping; the seed's work logs stay under all of them except a few file lists.
MAX_KEY_CHANGES = 15
MAX_GOTCHAS = 10
MAX_TAGS = 20
MAX_CONCEPTS = 15  # each of domain_concepts, technical_patterns, integration_points
MAX_CODE_CONTEXT_ITEMS = 10  # each of key_patterns, api_surface, breaking_changes, dependencies
MAX_PLANNING_ITEMS = 10  # each of next_logical_steps, architecture_decisions, extension_points
MAX_OUTCOMES = 10  # entries of outcomes and of complexity
MAX_FILES_TOUCHED = 20
MAX_RELATED_TASKS = 10

#: Keys never written: ``temporal_context`` restates ``date`` as year/month/week numbers, which
#: only dilutes the embedding; times are written once, as the Date segment.
SKIPPED_KEYS = frozenset({"temporal_context", *TIME_KEYS})

_Render = Callable[[str, Any], str]


def _gotcha_text(gotcha: Any) -> str:
    if not isinstance(gotcha, dict):
        return text_of(gotcha)
    parts = []
    issue = text_of(gotcha.get("issue"))
    if issue:
        parts.append(sentence(issue))
    solution = text_of(gotcha.get("solution"))
    if solution:
        parts.append(f"Solution: {sentence(solution)}")
    kinds = [scalar_text(gotcha.get(key)) for key in ("category", "severity")]
    if any(kinds):
        parts.append(f"[{', '.join(kind for kind in kinds if kind)}]")
    rest = {
        k: v for k, v in gotcha.items() if k not in ("issue", "solution", "category", "severity")
    }
    parts.extend(sentence(line) for line in key_path_lines(rest))
    return " ".join(parts)


def _gotchas(label: str, value: Any) -> str:
    items = value if isinstance(value, list) else [value]
    shown = [_gotcha_text(item) for item in items[:MAX_GOTCHAS]]
    lines = [f"- {text}" for text in shown if text]
    if not lines:
        return ""
    if len(items) > MAX_GOTCHAS:
        lines.append(f"- (+{len(items) - MAX_GOTCHAS} more)")
    return "\n".join([f"{label}:", *lines])


def _capped(render: Callable[[str, Any, int], str], cap: int) -> _Render:
    return lambda label, value: render(label, value, cap)


# (path, label, render) in order of search value. A path is a top-level key, or a key inside
# one of the grouping objects (solution, code_context, semantic_context, future_planning).
_concepts = _capped(inline_list, MAX_CONCEPTS)
_code_items = _capped(bullet_list, MAX_CODE_CONTEXT_ITEMS)
_planned = _capped(bullet_list, MAX_PLANNING_ITEMS)
_FIELDS: tuple[tuple[tuple[str, ...], str, _Render], ...] = (
    (("task",), "Task", labelled),
    (("component",), "Component", labelled),
    (("summary",), "Summary", labelled),
    (("root_cause",), "Root cause", labelled),
    (("lesson",), "Lesson", labelled),
    (("content",), "Content", labelled),
    (("solution", "approach"), "Solution", labelled),
    (("solution", "key_changes"), "Key changes", _capped(bullet_list, MAX_KEY_CHANGES)),
    (("gotchas",), "Gotchas", _gotchas),
    (("tags",), "Tags", _capped(inline_list, MAX_TAGS)),
    (("semantic_context", "domain_concepts"), "Domain concepts", _concepts),
    (("semantic_context", "technical_patterns"), "Technical patterns", _concepts),
    (("semantic_context", "integration_points"), "Integration points", _concepts),
    (("code_context", "key_patterns"), "Key patterns", _code_items),
    (("code_context", "api_surface"), "API surface", _code_items),
    (("code_context", "breaking_changes"), "Breaking changes", _code_items),
    (("code_context", "dependencies_added"), "Dependencies added", _code_items),
    (("validation",), "Validation", labelled),
    (("outcomes",), "Outcomes", _capped(mapping_list, MAX_OUTCOMES)),
    (("future_planning", "next_logical_steps"), "Next steps", _planned),
    (
        ("future_planning", "architecture_decisions"),
        "Architecture decisions",
        _capped(mapping_list, MAX_PLANNING_ITEMS),
    ),
    (("future_planning", "extension_points"), "Extension points", _planned),
    (("complexity",), "Complexity", _capped(mapping_list, MAX_OUTCOMES)),
    (("files_touched",), "Files touched", _capped(inline_list, MAX_FILES_TOUCHED)),
    (("related_tasks",), "Related tasks", _capped(inline_list, MAX_RELATED_TASKS)),
    (("agent",), "Agent", labelled),
)

_GROUPS = frozenset(path[0] for path, _, _ in _FIELDS if len(path) == 2)
_WRITTEN = frozenset(path for path, _, _ in _FIELDS)


def is_work_log(document: Mapping[str, Any]) -> bool:
    """Return True when ``document`` has a work-log key and no ``speaker``."""
    return "speaker" not in document and any(
        document.get(key) not in (None, "", [], {}) for key in WORK_LOG_KEYS
    )


def _lookup(document: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _remainder(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the field table does not write: unknown keys, and unknown keys inside groups."""
    rest: dict[str, Any] = {}
    for key, value in document.items():
        if key in SKIPPED_KEYS or (key,) in _WRITTEN:
            continue
        if key == "solution" and not isinstance(value, dict):
            continue  # a plain-string solution is written by the "Solution" row below
        if key in _GROUPS and isinstance(value, dict):
            inner = {k: v for k, v in value.items() if (key, k) not in _WRITTEN}
            if inner:
                rest[key] = inner
            continue
        rest[key] = value
    return rest


def render_work_log(document: Mapping[str, Any], day: str | None) -> Iterator[str]:
    """Yield the work log's text pieces in order of search value.

    ``day`` (the memory's date as written for search) becomes the Date segment after Task and
    Component; list fields are capped by the ``MAX_*`` constants of this module, with
    "(+N more)" saying how many were left out.
    """
    for path, label, render in _FIELDS:
        value = _lookup(document, path)
        if path == ("solution", "approach") and isinstance(document.get("solution"), str):
            value = document["solution"]
        if value is not None:
            yield render(label, value)
        if path == ("component",) and day:
            yield f"Date: {sentence(day)}"
    yield from key_path_lines(_remainder(document))
