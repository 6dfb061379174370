"""Backup and restore of a home: a pg_dump of its database, Chroma rebuilt from pgvector.

Postgres is the durable copy (DESIGN §6), so a backup holds the database only (memories,
vectors, API keys' hashes, Dagster's runs); a restore rebuilds every tenant's Chroma collection
from the restored pgvector vectors, without re-embedding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from memory_pipeline.consistency import rebuild_collection_from_pgvector
from memory_pipeline.local_services import ensure_services
from memory_pipeline.settings import Settings
from memory_pipeline.storage.backup import (
    backup_counts,
    dump_database,
    restore_database,
)
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, connect_chroma


def backup_home(settings: Settings, path: Path) -> dict[str, Any]:
    """Write a consistent backup of the home's database to ``path``; say what it holds."""
    started = time.monotonic()
    url = ensure_services(settings).database_url
    dump_database(url, path)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "seconds": round(time.monotonic() - started, 3),
        "counts": backup_counts(url),
    }


def _live_tenants(db: Database) -> list[tuple[Tenant, str]]:
    with db.connection() as conn:
        rows = conn.execute(
            """SELECT user_id, project_id, live_model FROM memory_tenant
               WHERE live_model IS NOT NULL ORDER BY tenant_key"""
        ).fetchall()
    return [(Tenant(r["user_id"], r["project_id"]), r["live_model"]) for r in rows]


def restore_home(settings: Settings, path: Path) -> dict[str, Any]:
    """Restore ``path`` into the home's empty database, migrate it, rebuild Chroma from it.

    Raises ``ValueError`` if the database is not empty.
    """
    started = time.monotonic()
    endpoints = ensure_services(settings)
    restore_database(endpoints.database_url, path)
    restored = time.monotonic()
    migrations = apply_migrations(endpoints.database_url)  # a backup of an older version
    db = Database(endpoints.database_url)
    try:
        store = ChromaVectorStore(
            connect_chroma(endpoints.chroma_host, endpoints.chroma_port, endpoints.chroma_token)
        )
        rebuilt = sum(
            rebuild_collection_from_pgvector(db, store, tenant, model)
            for tenant, model in _live_tenants(db)
        )
    finally:
        db.close()
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "restore_seconds": round(restored - started, 3),
        "chroma_rebuild_seconds": round(time.monotonic() - restored, 3),
        "migrations_applied": migrations,
        "chroma_vectors_rebuilt": rebuilt,
        "counts": backup_counts(endpoints.database_url),
    }
