"""Per-model vector indexes: a partial HNSW index on memory_vector for each model's dimension."""

from __future__ import annotations

import hashlib

import psycopg

from memory_pipeline.storage.database import connect_once


def index_name_for(model_id: str) -> str:
    """A stable, valid index name for ``model_id``."""
    return "memory_vector_hnsw_" + hashlib.sha256(model_id.encode()).hexdigest()[:12]


def ensure_model_index(
    database_url: str, model_id: str, dimension: int, model_source: str | None = None
) -> None:
    """Record ``model_id``'s dimension (and weights' source) and create its HNSW index, once.

    Raises ``ValueError`` if the model was recorded before with another dimension.
    """
    index = index_name_for(model_id)
    with connect_once(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT dimension FROM embedding_model WHERE model_id = %s", (model_id,)
        ).fetchone()
        if row is not None and row["dimension"] != dimension:
            raise ValueError(
                f"embedding model {model_id!r} was recorded with dimension {row['dimension']}, "
                f"but now produces {dimension}"
            )
        exists = conn.execute("SELECT to_regclass(%s) AS reg", (index,)).fetchone()
        if model_source is not None:
            conn.execute(
                "UPDATE embedding_model SET model_source = %s WHERE model_id = %s",
                (model_source, model_id),
            )
        if row is not None and exists and exists["reg"] is not None:
            return
        dim = int(dimension)
        statement = psycopg.sql.SQL(
            "CREATE INDEX IF NOT EXISTS {index} ON memory_vector "
            "USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
            "WHERE embedding_model = {model}"
        ).format(
            index=psycopg.sql.Identifier(index),
            dim=psycopg.sql.SQL(str(dim)),
            model=psycopg.sql.Literal(model_id),
        )
        conn.execute(statement)
        conn.execute(
            "INSERT INTO embedding_model (model_id, dimension, index_name, model_source) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (model_id) DO NOTHING",
            (model_id, dim, index, model_source),
        )
