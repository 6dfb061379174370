"""API keys: how they look, how they are stored and how a presented key is checked.

A key reads ``mpk_<lookup_id>_<secret>``: 12 hex characters that find the key's row (not a
secret) and 256 random bits. Only ``sha256(secret)`` is stored; a presented key's hash is
compared with it by :func:`hmac.compare_digest` (constant time), and an unknown lookup id is
compared against a dummy hash, so a wrong key costs the same time either way. A fast hash is
right here: slow hashes protect guessable passwords, and nobody guesses 256 random bits.

A tenant key reaches one tenant; an admin key reaches every tenant. Revocation takes effect
on the next request: nothing is cached.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from memory_pipeline.storage import api_keys as q
from memory_pipeline.storage.database import Database
from memory_pipeline.tenancy import Tenant

KEY_PREFIX = "mpk_"
_KEY_PATTERN = re.compile(r"^mpk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").digest()
MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a key's id and name, and its tenant (``None``: admin)."""

    key_id: int
    name: str | None
    tenant: Tenant | None

    @property
    def is_admin(self) -> bool:
        return self.tenant is None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: the only time its secret exists outside the caller's hands."""

    id: int
    key: str

    def __repr__(self) -> str:  # never show the key in a traceback or log line
        return f"NewKey(id={self.id})"


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def _validate_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a key's name must be 1 to {MAX_NAME_LENGTH} characters")
    return name


def create_key(db: Database, tenant: Tenant | None, name: str | None = None) -> NewKey:
    """Create a key for ``tenant`` (``None``: an admin key); return its id and the key itself."""
    name = _validate_name(name)
    lookup_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with db.connection() as conn:
        key_id = q.insert_api_key(conn, lookup_id, _hash(secret), tenant=tenant, name=name)
    return NewKey(key_id, f"{KEY_PREFIX}{lookup_id}_{secret}")


def authenticate(db: Database, presented: str) -> Principal | None:
    """The principal a presented key acts for, or ``None`` (malformed, unknown, wrong, revoked)."""
    match = _KEY_PATTERN.match(presented)
    if match is None:
        return None
    lookup_id, secret = match.groups()
    with db.autocommit_connection() as conn:
        row = q.find_api_key(conn, lookup_id)
    stored = bytes(row["secret_sha256"]) if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(stored, _hash(secret)) or row is None:
        return None
    if row["revoked_at"] is not None:
        return None
    tenant = None if row["is_admin"] else Tenant(row["user_id"], row["project_id"])
    return Principal(int(row["id"]), row["name"], tenant)


def list_keys(db: Database) -> list[dict[str, Any]]:
    """Every key (id, name, scope, times), never the key or its hash."""
    with db.connection() as conn:
        return [dict(r) for r in q.list_api_keys(conn)]


def revoke_key(db: Database, key_id: int) -> dict[str, Any]:
    """Revoke a key; the next request with it is refused. ``ValueError`` if there is none."""
    with db.connection() as conn:
        row = q.revoke_api_key(conn, int(key_id))
    if row is None:
        raise ValueError(f"API key {key_id} does not exist")
    return dict(row)


def has_admin_key(db: Database) -> bool:
    """Whether an admin key that is not revoked exists."""
    with db.connection() as conn:
        return q.has_active_admin_key(conn)
