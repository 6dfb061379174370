"""Per-tenant advisory locks for whole-collection steps (repair, purge, model switch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

from memory_pipeline.tenancy import Tenant


@contextmanager
def tenant_lock(conn: psycopg.Connection, tenant: Tenant) -> Iterator[None]:
    """Hold the tenant's transaction-level advisory lock for the block (in one transaction)."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"tenant:{tenant.key}",)
        )
        yield


def shared_tenant_lock(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Take the tenant's lock in shared mode until the current transaction ends.

    Runs take it shared (they may overlap; row claiming keeps them apart); whole-collection
    steps take it exclusively and so wait for, and block, the runs of that tenant.
    """
    conn.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))", (f"tenant:{tenant.key}",)
    )


def shared_tenant_locks(conn: psycopg.Connection, tenant_keys: Sequence[str]) -> None:
    """:func:`shared_tenant_lock` for many tenants in one statement, taken in key order."""
    conn.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('tenant:' || k, 0)) "
        "FROM unnest(%s::text[]) AS k",
        (sorted(tenant_keys),),
    )
