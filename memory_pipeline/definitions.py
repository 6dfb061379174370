"""The Dagster code location: ``memory_pipeline.definitions:defs``.

Importing this module must stay light (no torch, no sentence-transformers): the code server,
the daemon's sensor evaluation and every run process import it (DESIGN §7).
"""

from dagster import Definitions, in_process_executor

from memory_pipeline.defs.assets import memory_tenants, tenant_memory_vectors
from memory_pipeline.defs.checks import (
    tenant_checks,
    tenant_drift_check,
    tenant_drift_check_schedule,
)
from memory_pipeline.defs.imports import bulk_import, bulk_import_schedule
from memory_pipeline.defs.repair import repair_chroma_from_pgvector
from memory_pipeline.defs.resources import default_resources
from memory_pipeline.defs.sensors import pending_rows_sensor

defs = Definitions(
    assets=[tenant_memory_vectors, memory_tenants],
    asset_checks=tenant_checks,
    jobs=[bulk_import, repair_chroma_from_pgvector, tenant_drift_check],
    schedules=[bulk_import_schedule, tenant_drift_check_schedule],
    sensors=[pending_rows_sensor],
    resources=default_resources(),
    executor=in_process_executor,
)
