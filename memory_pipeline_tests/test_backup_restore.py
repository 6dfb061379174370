"""Backup and restore of a whole home, as an operator runs them: the CLI on real servers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from dagster import DagsterRunStatus

from memory_pipeline.consistency import compare_vectors
from memory_pipeline.defs.instance import home_instance, prepare_dagster_home
from memory_pipeline.local_services import ensure_services, stop_services
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.service import keys
from memory_pipeline.settings import Settings
from memory_pipeline.tenancy import Tenant
from memory_pipeline_tests.dagster_runs import record_run
from memory_pipeline_tests.test_lifecycle import POISON, PoisonedEmbedder

CLI = [sys.executable, "-m", "memory_pipeline.cli"]
QUERIES = ["where did the team meet", "the database migration plan", "favourite colour"]
TOPICS = ["offsite in Lisbon", "database migration plan", "favourite colour is teal", "the cat"]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600)


def _fill_home(store: MemoryStore, tenants: list[Tenant]) -> dict[str, Tenant | None]:
    """Several tenants with chunked, deleted, failed and dead rows, keys and Dagster runs."""
    for n, tenant in enumerate(tenants):
        for i, topic in enumerate(TOPICS):
            store.create_memory_log(
                tenant.user_id, tenant.project_id, {"content": f"{tenant.user_id} {topic} {i}"}
            )
        long_text = " ".join(f"Sentence {k} of a long note about {TOPICS[n]}." for k in range(300))
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": long_text})
    store.process_pending()
    gone = store.create_memory_log(tenants[0].user_id, tenants[0].project_id, {"content": "bye"})
    store.process_pending(tenants[0].user_id, tenants[0].project_id)
    store.delete_memory_log(gone)  # a tombstone
    poisoned = MemoryStore(
        store.settings, store.endpoints, embedder=PoisonedEmbedder(store.embedder), migrate=False
    )
    try:
        sick = tenants[1]
        store.create_memory_log(sick.user_id, sick.project_id, {"content": f"dead {POISON}"})
        for _ in range(store.settings.max_attempts):
            poisoned.process_pending(sick.user_id, sick.project_id)
        store.create_memory_log(sick.user_id, sick.project_id, {"content": f"failed {POISON}"})
        poisoned.process_pending(sick.user_id, sick.project_id)
    finally:
        poisoned.close()
    made = {keys.create_key(store.db, t, "round trip").key: t for t in tenants}
    made[keys.create_key(store.db, None, "admin").key] = None
    prepare_dagster_home(store.settings, store.endpoints)
    with home_instance(store.settings, store.endpoints) as instance:
        record_run(instance, DagsterRunStatus.SUCCESS, {"round_trip": "1"})
        record_run(instance, DagsterRunStatus.FAILURE, {"round_trip": "1"})
    return made


def _answers(store: MemoryStore, tenants: list[Tenant]) -> dict[tuple[str, str], list]:
    return {
        (t.key, q): [
            (r.log_id, round(r.score, 5))
            for r in store.search_similar_memories(q, t.user_id, t.project_id, 10)
        ]
        for t in tenants
        for q in QUERIES
    }


def _vector_ids(store: MemoryStore) -> set[str]:
    with store.db.connection() as conn:
        return {r["vector_id"] for r in conn.execute("SELECT vector_id FROM memory_vector")}


@pytest.fixture
def fresh_home(settings: Settings):
    home = Path(tempfile.mkdtemp(prefix="mpr-", dir="/tmp"))
    fresh = Settings(
        home=home,
        embedding_model=settings.embedding_model,
        retry_backoff_seconds=0.0,
        max_attempts=settings.max_attempts,
    )
    yield fresh
    stop_services(fresh)
    shutil.rmtree(home, ignore_errors=True)


def test_a_restored_home_answers_as_the_backed_up_one(
    store, home_env, new_tenant, fresh_home, test_home
):
    tenants = [new_tenant() for _ in range(3)]
    made_keys = _fill_home(store, tenants)
    before = (store.status(), _vector_ids(store), _answers(store, tenants))
    backup = test_home / "backups" / "home.dump"

    dumped = run_cli(home_env, "backup", str(backup), "--json")
    assert dumped.returncode == 0, dumped.stderr
    report = json.loads(dumped.stdout)
    assert report["bytes"] == backup.stat().st_size > 0
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert report["counts"]["dagster_runs"] >= 2 and report["counts"]["api_keys"] >= 4
    assert all(k.encode() not in backup.read_bytes() for k in made_keys)  # hashes only

    fresh_env = {**home_env, "MEMORY_PIPELINE_HOME": str(fresh_home.home)}
    restored = run_cli(fresh_env, "restore", str(backup), "--json")
    assert restored.returncode == 0, restored.stderr
    result = json.loads(restored.stdout)
    assert result["counts"] == report["counts"]
    assert result["chroma_vectors_rebuilt"] == len(before[1])
    (fresh_home.home / "round_trip.json").write_text(json.dumps({"backup": report, **result}))

    with MemoryStore(fresh_home, ensure_services(fresh_home), embedder=store.embedder) as copy:
        assert copy.status() == before[0]
        assert _vector_ids(copy) == before[1]
        for tenant in tenants:
            assert compare_vectors(
                copy.db, copy.vector_store, tenant, copy.embedder.model_id
            ).in_sync
        assert _answers(copy, tenants) == before[2]
        for key, tenant in made_keys.items():
            principal = keys.authenticate(copy.db, key)
            assert principal is not None and principal.tenant == tenant
        prepare_dagster_home(fresh_home, copy.endpoints)  # `up` writes it on a restored home
        with home_instance(fresh_home, copy.endpoints) as instance:
            runs = instance.get_run_records()
            assert sum(r.dagster_run.tags.get("round_trip") == "1" for r in runs) == 2
    print(json.dumps({"backup": report, "restore": result}))  # the figures, with -s

    again = run_cli(fresh_env, "restore", str(backup))
    assert again.returncode != 0
    assert len(again.stderr.strip().splitlines()) == 1 and "not empty" in again.stderr


def test_restore_of_a_missing_file_is_a_one_line_error(home_env, fresh_home):
    env = {**home_env, "MEMORY_PIPELINE_HOME": str(fresh_home.home)}
    proc = run_cli(env, "restore", os.path.join(str(fresh_home.home), "no-such.dump"))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"memory-pipeline restore: no backup file at {fresh_home.home / 'no-such.dump'}"
    ]
