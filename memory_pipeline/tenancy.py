"""Tenants: validation of ids, the tenant key and the Chroma collection name (DESIGN §3).

This module is the one source of the tenant-key and collection-name rule.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

MAX_ID_LENGTH = 255
COLLECTION_PREFIX = "memory_logs_"


def _encode_id_part(value: str) -> str:
    # Percent-encode only '%' and ':' so ids without them keep the seed's key, while
    # ("a:b", "c") and ("a", "b:c") stay two tenants.
    return value.replace("%", "%25").replace(":", "%3A")


def validate_tenant_id(value: object, field_name: str) -> str:
    """Return ``value`` if it is a valid user or project id; else raise ``ValueError``.

    Valid: a string of 1–255 characters with no control characters.
    """
    if not isinstance(value, str):
        raise ValueError(f"{field_name} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{field_name} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(
            f"{field_name} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise ValueError(f"{field_name} contains a control character ({ch!r})")
    return value


def tenant_key(user_id: str, project_id: str) -> str:
    """The tenant's key: ``sha256(enc(user_id) + ":" + enc(project_id))[:16]`` (hex)."""
    raw = f"{_encode_id_part(user_id)}:{_encode_id_part(project_id)}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def collection_name(key: str) -> str:
    """The Chroma collection that holds a tenant's vectors for the active model."""
    return f"{COLLECTION_PREFIX}{key}"


@dataclass(frozen=True, slots=True)
class Tenant:
    """A validated (user_id, project_id) pair and its derived key."""

    user_id: str
    project_id: str

    def __post_init__(self) -> None:
        validate_tenant_id(self.user_id, "user_id")
        validate_tenant_id(self.project_id, "project_id")

    @property
    def key(self) -> str:
        return tenant_key(self.user_id, self.project_id)

    @property
    def collection_name(self) -> str:
        return collection_name(self.key)

    def __str__(self) -> str:
        return f"{self.user_id}:{self.project_id} ({self.key})"
