"""A small demo tenant for the notebooks: real seed memories if present, else synthetic ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memory_pipeline.tenancy import Tenant

DEMO_TENANT = Tenant("demo", "seed-memories")
SEED_FOLDERS = ("work_logs", "memory_logs", "conversations", "mental_notes")

SYNTHETIC_MEMORIES: tuple[dict[str, Any], ...] = (
    {
        "task": "fix-nightly-backup",
        "summary": "Nightly Postgres backup failed: disk full.",
        "root_cause": "WAL archive never pruned",
        "lesson": "Alert on disk usage above 80%.",
    },
    {
        "task": "chroma-per-tenant",
        "summary": "One Chroma collection per tenant, cosine space.",
        "lesson": "Verify collection metadata on open.",
    },
    {"content": "Remember to rotate the API keys at the start of every month."},
    {"content": "The Dagster sensor polls pending rows every five seconds."},
    {
        "speaker": "Ana",
        "text": "Did the deploy go out before the freeze?",
        "timestamp": "2024-03-01T10:00:00Z",
    },
    {
        "speaker": "Ben",
        "text": "Yes, the deploy shipped on Thursday after the migration.",
        "timestamp": "2024-03-01T10:01:00Z",
    },
)


def find_seed_memories(start: Path | None = None) -> Path | None:
    """The ``shared/data/seed-memories`` folder above ``start`` (or the cwd), if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data" / "seed-memories"
        if candidate.is_dir():
            return candidate
    return None


def seed_demo_tenant(store: Any, *, per_folder: int = 5, seed_dir: Path | None = None) -> Tenant:
    """Write the demo tenant's memories (idempotent by file name) and process them.

    Takes up to ``per_folder`` files of each seed-memories folder, or the synthetic memories when
    the folder is absent. Returns the tenant.
    """
    tenant = DEMO_TENANT
    seed_dir = seed_dir or find_seed_memories()
    records: list[tuple[str, dict[str, Any]]] = []
    if seed_dir is not None:
        for folder in SEED_FOLDERS:
            for path in sorted((seed_dir / folder).glob("*.json"))[:per_folder]:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    records.append((f"{folder}/{path.name}", data))
    if not records:
        records = [(f"synthetic/{i}", m) for i, m in enumerate(SYNTHETIC_MEMORIES)]
    for external_id, raw in records:
        store.create_memory_log(tenant.user_id, tenant.project_id, raw, external_id=external_id)
    store.process_pending(tenant.user_id, tenant.project_id)
    return tenant
