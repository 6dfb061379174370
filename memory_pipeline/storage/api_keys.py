"""Queries on ``api_key`` (sql/009): the service's keys, stored as a lookup id and a secret hash.

Every function takes an open psycopg connection; the caller owns the transaction. Secrets never
pass through here, only their SHA-256.
"""

from __future__ import annotations

from typing import Any

import psycopg

from memory_pipeline.tenancy import Tenant

#: What ``keys list`` shows: everything but the hash.
LISTED_COLUMNS = "id, name, is_admin, user_id, project_id, tenant_key, created_at, revoked_at"


def insert_api_key(
    conn: psycopg.Connection,
    lookup_id: str,
    secret_sha256: bytes,
    *,
    tenant: Tenant | None,
    name: str | None,
) -> int:
    """Store a key (``tenant`` ``None``: an admin key); return its id."""
    row = conn.execute(
        """INSERT INTO api_key (lookup_id, secret_sha256, name, is_admin, user_id, project_id,
                                tenant_key)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            lookup_id,
            secret_sha256,
            name,
            tenant is None,
            tenant.user_id if tenant else None,
            tenant.project_id if tenant else None,
            tenant.key if tenant else None,
        ),
    ).fetchone()
    return int(row["id"])


def find_api_key(conn: psycopg.Connection, lookup_id: str) -> dict[str, Any] | None:
    """The key row with this lookup id (hash included, revoked or not), or ``None``."""
    return conn.execute(
        f"SELECT {LISTED_COLUMNS}, secret_sha256 FROM api_key WHERE lookup_id = %s",
        (lookup_id,),
    ).fetchone()


def list_api_keys(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every key, oldest first, without its hash."""
    return conn.execute(f"SELECT {LISTED_COLUMNS} FROM api_key ORDER BY id").fetchall()


def revoke_api_key(conn: psycopg.Connection, key_id: int) -> dict[str, Any] | None:
    """Mark a key revoked (a second call keeps the first time); its row, or ``None`` if unknown."""
    return conn.execute(
        f"""UPDATE api_key SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s
            RETURNING {LISTED_COLUMNS}""",
        (key_id,),
    ).fetchone()


def has_active_admin_key(conn: psycopg.Connection) -> bool:
    """Whether some admin key is not revoked."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM api_key WHERE is_admin AND revoked_at IS NULL) AS present"
    ).fetchone()
    return bool(row["present"])
