"""Tenants: validation of ids, the tenant key, the Chroma collection name and the Dagster
partition key (DESIGN §3, §4).

This module is the one source of the tenant-key, collection-name and partition-key rules.
"""

from __future__ import annotations

import hashlib
import unicodedata
import urllib.parse
from dataclasses import dataclass

MAX_ID_LENGTH = 255
COLLECTION_PREFIX = "memory_logs_"
#: Between the encoded user id and the encoded project id of a partition key.
PARTITION_KEY_SEPARATOR = "/"
#: Written percent-encoded in partition keys: the escape itself, the separator, and ',' (the
#: UI's list separator); '.' only where it would complete a '...' (Dagster's range marker).
_PARTITION_KEY_ESCAPED = frozenset("%/,")


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


def _percent(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8"))


def _encode_partition_part(value: str) -> str:
    out: list[str] = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        edge_space = ch == " " and i in (0, last)  # a list in the UI trims them
        third_dot = ch == "." and out[-2:] == [".", "."]
        # not printable: other control, format (invisible) and separator characters
        if ch in _PARTITION_KEY_ESCAPED or edge_space or third_dot or not ch.isprintable():
            out.append(_percent(ch))
        else:
            out.append(ch)
    return "".join(out)


def tenant_partition_key(user_id: str, project_id: str) -> str:
    """The tenant's Dagster partition key: ``enc(user_id) + "/" + enc(project_id)``.

    ``enc`` keeps the id readable and percent-encodes (UTF-8, ``%XX``) only ``%``, ``/``, ``,``,
    characters that are not printable (control, invisible and separator characters other than
    a space), a space at either end of the id, and a ``.`` that would complete ``...``, which
    Dagster refuses in partition keys. So ``("alice", "proj one")`` is ``alice/proj one``.
    """
    return (
        f"{_encode_partition_part(user_id)}{PARTITION_KEY_SEPARATOR}"
        f"{_encode_partition_part(project_id)}"
    )


def tenant_from_partition_key(key: str) -> Tenant:
    """The tenant whose :func:`tenant_partition_key` is ``key``; else ``ValueError``.

    Only the exact key the rule writes is accepted (``al%69ce/p`` is not ``alice/p``'s key), so
    every tenant has one partition and every partition at most one tenant.
    """
    parts = key.split(PARTITION_KEY_SEPARATOR)
    if len(parts) != 2:
        raise ValueError(
            f"{key!r} is not a tenant partition key (expected user_id/project_id, with '/' "
            "inside an id written %2F)"
        )
    try:
        user_id, project_id = (urllib.parse.unquote(p, errors="strict") for p in parts)
        tenant = Tenant(user_id, project_id)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{key!r} is not a tenant partition key: {exc}") from None
    if tenant.partition_key != key:
        raise ValueError(
            f"{key!r} is not a tenant partition key; this tenant's key is {tenant.partition_key!r}"
        )
    return tenant


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

    @property
    def partition_key(self) -> str:
        return tenant_partition_key(self.user_id, self.project_id)

    def __str__(self) -> str:
        return f"{self.user_id}:{self.project_id} ({self.key})"
