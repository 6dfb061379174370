"""The Dagster code location: ``memory_pipeline.definitions:defs``.

Importing this module must stay light (no torch, no sentence-transformers): the code server,
the daemon's sensor evaluation and every run process import it (DESIGN §7).
"""

from dagster import Definitions

from memory_pipeline.defs.assets import (
    embed_pending_memories,
    memory_log,
    memory_tenants,
    tenant_directory_automation,
    tenant_memory_vectors,
)
from memory_pipeline.defs.checks import (
    stuck_pending_check,
    stuck_pending_check_schedule,
    tenant_checks,
    tenant_checks_job,
    tenant_drift_check,
    tenant_drift_check_schedule,
)
from memory_pipeline.defs.executors import executor_from_settings
from memory_pipeline.defs.imports import bulk_import, bulk_import_schedule
from memory_pipeline.defs.repair import repair_chroma_from_pgvector
from memory_pipeline.defs.resources import default_resources
from memory_pipeline.defs.sensors import pending_rows_sensor
from memory_pipeline.settings import Settings

defs = Definitions(
    assets=[memory_log, tenant_memory_vectors, memory_tenants],
    asset_checks=tenant_checks,
    jobs=[
        embed_pending_memories,
        bulk_import,
        repair_chroma_from_pgvector,
        tenant_checks_job,
        tenant_drift_check,
        stuck_pending_check,
    ],
    schedules=[bulk_import_schedule, tenant_drift_check_schedule, stuck_pending_check_schedule],
    sensors=[pending_rows_sensor, tenant_directory_automation],
    resources=default_resources(),
    # MEMORY_PIPELINE_EXECUTOR: in_process (default), multiprocess or celery (defs/executors.py)
    executor=executor_from_settings(Settings.from_env()),
)
