"""What the UI shows about tenants: materialization and check metadata, named so it reads alone.

``total_*`` entries are a tenant's state after a run (what the Plots tab draws); ``run_*``
entries are what that run did. Row tables show a sample of rows, never all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from memory_pipeline.processing import ProcessCounts
from memory_pipeline.storage.tenant_status import RowSample, ShardTotals, TenantTotals
from memory_pipeline.tenancy import Tenant

#: Rows shown in a table of memories (skipped, failed, stuck); the counts tell the rest.
ROW_SAMPLE_SIZE = 20
#: Tenants shown in a per-tenant table of a check or of the tenant directory.
TENANT_TABLE_SIZE = 100
#: Characters of a row's last error shown in a table cell.
ERROR_CHARS = 300


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]]) -> MetadataValue:
    """A table value of ``rows`` with ``columns`` given as ``(name, type)`` pairs."""
    schema = TableSchema(columns=[TableColumn(name, kind) for name, kind in columns])
    names = [name for name, _ in columns]
    return MetadataValue.table(
        [TableRecord({n: row.get(n) for n in names}) for row in rows], schema
    )


def tenant_identity(tenant: Tenant) -> dict[str, Any]:
    """Who a partition is: the ids an operator knows, and the keys the stores use."""
    return {
        "user_id": tenant.user_id,
        "project_id": tenant.project_id,
        "tenant_key": tenant.key,
        "collection": MetadataValue.text(tenant.collection_name),
    }


def totals_metadata(totals: TenantTotals) -> dict[str, int]:
    """``total_pending`` … ``total_vectors``: the tenant's state now."""
    return {f"total_{name}": value for name, value in totals.as_dict().items()}


def run_metadata(counts: ProcessCounts) -> dict[str, int]:
    """``run_embedded`` …: what one run did to a tenant's rows."""
    return {f"run_{name}": value for name, value in counts.as_dict().items()}


def row_table(samples: Sequence[RowSample], tenants: Mapping[str, Tenant]) -> MetadataValue:
    """Sampled memories with their tenant, state, attempts and last error (or skip reason)."""
    return table(
        [
            ("id", "int"),
            ("tenant", "string"),
            ("status", "string"),
            ("attempts", "int"),
            ("last_error", "string"),
            ("updated_at", "string"),
        ],
        [
            {
                "id": s.id,
                "tenant": tenants[s.tenant_key].partition_key
                if s.tenant_key in tenants
                else s.tenant_key,
                "status": s.status,
                "attempts": s.attempts,
                "last_error": (s.last_error or "")[:ERROR_CHARS],
                "updated_at": s.updated_at.isoformat(timespec="seconds"),
            }
            for s in samples
        ],
    )


def tenant_materialization_metadata(
    tenant: Tenant,
    totals: TenantTotals,
    counts: ProcessCounts,
    samples: Sequence[RowSample],
) -> dict[str, Any]:
    """A tenant partition's materialization: who, totals after the run, this run's counts, and
    (when there are any) a sample of its skipped, failed and dead memories with their reasons."""
    metadata: dict[str, Any] = {
        **tenant_identity(tenant),
        **totals_metadata(totals),
        **run_metadata(counts),
    }
    not_embedded = [s for s in samples if s.tenant_key == tenant.key]
    if not_embedded:
        metadata["not_embedded_memories"] = row_table(not_embedded, {tenant.key: tenant})
    return metadata


def shard_materialization_metadata(
    shard: int,
    totals: ShardTotals,
    served: Mapping[Tenant, ProcessCounts],
    samples: Sequence[RowSample],
    collection: str,
) -> dict[str, Any]:
    """A shard partition's materialization: the shard, its totals after the run over all its
    tenants, what the run did, the tenants it served (at most :data:`TENANT_TABLE_SIZE`) and a
    sample of their skipped, failed and dead memories."""
    run = ProcessCounts.total(served.values())
    rows = [
        {
            "tenant": t.partition_key,
            "user_id": t.user_id,
            "project_id": t.project_id,
            "tenant_key": t.key,
            **{f"run_{name}": value for name, value in c.as_dict().items()},
        }
        for t, c in list(served.items())[:TENANT_TABLE_SIZE]
    ]
    metadata: dict[str, Any] = {
        "shard": shard,
        "shard_tenants": totals.tenants,
        "collection": MetadataValue.text(collection),
        **totals_metadata(totals.rows),
        **run_metadata(run),
        "run_tenants": len(served),
        "tenants_in_run": table(
            [
                ("tenant", "string"),
                ("user_id", "string"),
                ("project_id", "string"),
                ("tenant_key", "string"),
                *((f"run_{name}", "int") for name in ProcessCounts().as_dict()),
            ],
            rows,
        ),
    }
    tenants = {t.key: t for t in served}
    not_embedded = [s for s in samples if s.tenant_key in tenants][:ROW_SAMPLE_SIZE]
    if not_embedded:
        metadata["not_embedded_memories"] = row_table(not_embedded, tenants)
    return metadata
