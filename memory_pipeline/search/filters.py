"""``where_filter`` validation and its translation to SQL (Chroma's operator language, DESIGN §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import sql

#: The metadata keys every Chroma vector carries (DESIGN §3); the only keys a filter may name.
METADATA_KEYS: dict[str, type | tuple[type, ...]] = {
    "log_id": int,
    "user_id": str,
    "project_id": str,
    "memory_type": str,
    "occurred_at": (int, float),
    "embedding_model": str,
}
COMPARISON_OPERATORS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
LIST_OPERATORS = {"$in", "$nin"}
LOGICAL_OPERATORS = {"$and", "$or"}
MAX_FILTER_DEPTH = 16

#: How each key reads in SQL over ``memory_log m`` and ``memory_vector v``.
_SQL_COLUMNS = {
    "log_id": sql.SQL("m.id"),
    "user_id": sql.SQL("m.user_id"),
    "project_id": sql.SQL("m.project_id"),
    "memory_type": sql.SQL("m.memory_type"),
    "occurred_at": sql.SQL("extract(epoch FROM m.occurred_at)"),
    "embedding_model": sql.SQL("m.embedding_model"),
}


def _check_value(key: str, op: str, value: Any) -> None:
    expected = METADATA_KEYS[key]
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ValueError(
            f"where_filter: {key} {op} needs a {getattr(expected, '__name__', 'number')}, "
            f"got {value!r}"
        )


def validate_where_filter(where: Any, _depth: int = 0) -> None:
    """Raise ``ValueError`` unless ``where`` uses only known metadata keys and operators.

    Accepted: ``{key: value}``, ``{key: {"$op": value}}`` with ``$eq $ne $gt $gte $lt $lte``,
    ``{key: {"$in"|"$nin": [values]}}``, and ``{"$and"|"$or": [two or more filters]}``; values
    must have the key's type (``log_id`` int, ``occurred_at`` epoch seconds, the rest strings).
    """
    if _depth > MAX_FILTER_DEPTH:
        raise ValueError("where_filter is nested too deeply")
    if not isinstance(where, Mapping) or not where:
        raise ValueError("where_filter must be a non-empty object")
    if len(where) != 1:
        raise ValueError("where_filter: use $and to combine several conditions")
    ((key, cond),) = where.items()
    if not isinstance(key, str):
        raise ValueError(f"where_filter: unknown key {key!r}")
    if key in LOGICAL_OPERATORS:
        # Chroma refuses $and/$or with fewer than two filters; so do we, for one language.
        if not isinstance(cond, list) or len(cond) < 2:
            raise ValueError(f"where_filter: {key} needs a list of at least two filters")
        for sub in cond:
            validate_where_filter(sub, _depth + 1)
        return
    if key not in METADATA_KEYS:
        raise ValueError(
            f"where_filter: unknown key {key!r}; known keys: {', '.join(sorted(METADATA_KEYS))}"
        )
    if not isinstance(cond, Mapping):
        _check_value(key, "$eq", cond)
        return
    if len(cond) != 1:
        raise ValueError(f"where_filter: {key} needs exactly one operator")
    ((op, value),) = cond.items()
    if op in COMPARISON_OPERATORS:
        _check_value(key, op, value)
    elif op in LIST_OPERATORS:
        if not isinstance(value, list) or not value:
            raise ValueError(f"where_filter: {key} {op} needs a non-empty list")
        for item in value:
            _check_value(key, op, item)
    else:
        raise ValueError(f"where_filter: unknown operator {op!r} for {key}")


def where_to_sql(where: Mapping[str, Any]) -> sql.Composable:
    """The SQL condition of a validated filter (values are bound as parameters)."""
    ((key, cond),) = where.items()
    if key in LOGICAL_OPERATORS:
        joiner = sql.SQL(" AND ") if key == "$and" else sql.SQL(" OR ")
        return sql.SQL("({})").format(joiner.join(where_to_sql(sub) for sub in cond))
    column = _SQL_COLUMNS[key]
    if not isinstance(cond, Mapping):
        cond = {"$eq": cond}
    ((op, value),) = cond.items()
    if op in COMPARISON_OPERATORS:
        return sql.SQL("{} {} {}").format(
            column, sql.SQL(COMPARISON_OPERATORS[op]), sql.Literal(value)
        )
    negate = sql.SQL("NOT ") if op == "$nin" else sql.SQL("")
    return sql.SQL("{}({} = ANY({}))").format(negate, column, sql.Literal(list(value)))
