"""Tenants: validation of ids, the tenant key, the Chroma collection name, the Dagster
partition key (DESIGN §3, §4) and the tenant shard of a sharded home.

This module is the one source of the tenant-key, collection-name, partition-key and shard rules.
"""

from __future__ import annotations

import hashlib
import unicodedata
import urllib.parse
from dataclasses import dataclass, field, replace
from datetime import datetime

MAX_ID_LENGTH = 255
COLLECTION_PREFIX = "memory_logs_"
#: A sharded home's Chroma collections: one per shard and model (docs/decisions/0203).
SHARD_COLLECTION_PREFIX = "memory_shard_"
#: A shard's Dagster partition key: ``shard-0042`` (never holds the tenant separator '/').
SHARD_PARTITION_PREFIX = "shard-"
#: Shard numbers are written with at least this many digits, so keys sort as numbers.
SHARD_DIGITS = 4
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


def shard_of(key: str, shards: int) -> int:
    """The shard of the tenant with ``tenant_key`` ``key`` in a home of ``shards`` shards.

    The first 32 bits of the key (itself a sha256 prefix, so uniform) modulo ``shards``; the
    SQL function ``memory_pipeline_tenant_shard`` computes the same (a test holds them equal).
    """
    if shards < 1:
        raise ValueError(f"a home needs at least one shard, not {shards}")
    return int(key[:8], 16) % shards


def shard_partition_key(shard: int) -> str:
    """The Dagster partition key of a shard: ``shard-0042``."""
    return f"{SHARD_PARTITION_PREFIX}{shard:0{SHARD_DIGITS}d}"


def shard_from_partition_key(key: str) -> int | None:
    """The shard a partition key names, or ``None`` when it names none (a tenant's key)."""
    digits = key.removeprefix(SHARD_PARTITION_PREFIX)
    if digits == key or not (digits.isascii() and digits.isdigit()):
        return None
    shard = int(digits)
    return shard if shard_partition_key(shard) == key else None


def shard_collection_prefix(shard: int) -> str:
    """What the names of one shard's collections (one per model) begin with."""
    return f"{SHARD_COLLECTION_PREFIX}{shard:0{SHARD_DIGITS}d}__"


def shard_collection_name(shard: int, model_id: str) -> str:
    """The Chroma collection holding the vectors of ``model_id`` of one shard's tenants."""
    return f"{shard_collection_prefix(shard)}{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, slots=True)
class TenantLayout:
    """A home's layout: ``shards`` ``None``, a Dagster partition and a Chroma collection per
    tenant; else that many tenant shards, each one partition and one collection per model
    (docs/decisions/0203-tenant-shards.md)."""

    shards: int | None = None
    sharded_at: datetime | None = None

    @property
    def sharded(self) -> bool:
        return self.shards is not None

    def shard_of(self, tenant_key: str) -> int | None:
        """The tenant's shard in this layout (``None`` when the home is not sharded)."""
        return None if self.shards is None else shard_of(tenant_key, self.shards)

    def partition_key(self, tenant: Tenant) -> str:
        """The Dagster partition that serves the tenant: its own, or its shard's."""
        shard = self.shard_of(tenant.key)
        return tenant.partition_key if shard is None else shard_partition_key(shard)

    def partition_keys(self) -> list[str]:
        """A sharded home's partition keys, in shard order (empty when not sharded)."""
        return [shard_partition_key(n) for n in range(self.shards or 0)]


@dataclass(frozen=True, slots=True)
class Tenant:
    """A validated (user_id, project_id) pair and its derived key.

    ``shard`` says where the tenant's vectors live in Chroma: ``None``, its own collection
    (:attr:`collection_name`); a number, that shard's collections, shared with the shard's other
    tenants. It is read from Postgres (``memory_tenant.shard``, see
    ``storage.tenant_layout.placed``) and is not part of the tenant's identity.
    """

    user_id: str
    project_id: str
    shard: int | None = field(default=None, compare=False)

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

    def placed(self, shard: int | None) -> Tenant:
        """The same tenant with its vectors' placement (see the class docstring)."""
        return self if shard == self.shard else replace(self, shard=shard)

    def __str__(self) -> str:
        return f"{self.user_id}:{self.project_id} ({self.key})"
