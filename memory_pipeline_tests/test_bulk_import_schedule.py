"""The Dagster ``bulk_import`` job and its schedule, through Dagster's test APIs and the real Postgres."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance, Definitions, build_schedule_context

from memory_pipeline.defs.imports import bulk_import, bulk_import_schedule
from memory_pipeline.defs.resources import PostgresResource, default_resources
from memory_pipeline.tenancy import Tenant

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def import_dir(tmp_path: Path, test_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty import folder, configured through the environment the job and schedule read."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    monkeypatch.setenv("MEMORY_PIPELINE_HOME", str(test_home))
    monkeypatch.setenv("MEMORY_PIPELINE_IMPORT_DIR", str(folder))
    return folder


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def tenant(new_tenant: Callable[..., Tenant], database_url: str) -> Iterator[Tenant]:
    """A fresh tenant whose imported (pending) rows are removed afterwards."""
    made = new_tenant("scheduled")
    yield made
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM memory_log WHERE tenant_key = %s", (made.key,))
        conn.execute("DELETE FROM memory_tombstone WHERE tenant_key = %s", (made.key,))
        conn.execute("DELETE FROM memory_tenant WHERE tenant_key = %s", (made.key,))


def _write_jsonl(path: Path, tenant: Tenant, contents: list[str], *, bad_lines: int = 0) -> Path:
    lines = [
        json.dumps(
            {
                "user_id": tenant.user_id,
                "project_id": tenant.project_id,
                "raw_data": {"content": content},
                "external_id": content,
            }
        )
        for content in contents
    ] + ["{broken"] * bad_lines
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(instance: DagsterInstance, database_url: str, **options: Any):
    return bulk_import.execute_in_process(
        resources={"postgres": PostgresResource(database_url=database_url)},
        instance=instance,
        **options,
    )


def _metadata(result) -> dict[str, Any]:
    [output] = [e for e in result.all_node_events if e.is_successful_output]
    return {key: value.value for key, value in output.step_output_data.metadata.items()}


def _contents(database_url: str, tenant: Tenant) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT raw_data->>'content', status FROM memory_log WHERE tenant_key = %s ORDER BY id",
            (tenant.key,),
        ).fetchall()
    assert {status for _, status in rows} <= {"pending"}
    return [content for content, _ in rows]


def test_the_schedule_requests_a_bulk_import_run_when_files_wait(import_dir, instance, tenant):
    _write_jsonl(import_dir / "new.jsonl", tenant, ["waiting"])

    data = bulk_import_schedule.evaluate_tick(build_schedule_context(instance=instance))

    assert bulk_import_schedule.job_name == "bulk_import"
    [request] = data.run_requests
    assert request.job_name in (None, "bulk_import")
    assert request.tags["dagster/schedule_name"] == "bulk_import_schedule"


def test_the_schedule_skips_when_the_import_folder_is_empty(import_dir, instance):
    (import_dir / ".half-written.jsonl").write_text("{}\n")  # hidden files are not candidates

    data = bulk_import_schedule.evaluate_tick(build_schedule_context(instance=instance))

    assert data.run_requests == []
    assert str(import_dir) in data.skip_message


def test_the_schedule_runs_on_the_import_cron_hourly_by_default(home_env):
    script = (
        "from memory_pipeline.defs.imports import bulk_import_schedule as s; print(s.cron_schedule)"
    )

    def cron(**env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**home_env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO_ROOT,
            check=True,
        )
        return done.stdout.strip()

    assert cron() == "0 * * * *"
    assert cron(MEMORY_PIPELINE_IMPORT_CRON="*/10 * * * *") == "*/10 * * * *"


def test_the_job_loads_new_files_and_reports_counts_as_metadata(
    import_dir, instance, tenant, database_url
):
    _write_jsonl(import_dir / "a.jsonl", tenant, ["one", "two"], bad_lines=1)
    (import_dir / "nested").mkdir()
    _write_jsonl(import_dir / "nested" / "b.jsonl", tenant, ["two", "three"])

    result = _run(instance, database_url)

    assert result.success
    metadata = _metadata(result)
    assert {k: metadata[k] for k in ("inserted", "duplicates", "rejected", "files_imported")} == {
        "inserted": 3,
        "duplicates": 1,
        "rejected": 1,
        "files_imported": 2,
    }
    assert Path(metadata["reject_file"]).is_file()
    assert _contents(database_url, tenant) == ["one", "two", "three"]


def test_a_second_run_skips_files_already_imported(import_dir, instance, tenant, database_url):
    _write_jsonl(import_dir / "a.jsonl", tenant, ["only once"])
    _run(instance, database_url)
    _write_jsonl(import_dir / "b.jsonl", tenant, ["arrived later"])

    metadata = _metadata(_run(instance, database_url))

    assert (metadata["inserted"], metadata["files_imported"], metadata["files_skipped"]) == (
        1,
        1,
        1,
    )
    assert _contents(database_url, tenant) == ["only once", "arrived later"]


def test_an_unreadable_file_fails_the_run_after_the_others_are_imported(
    import_dir, instance, tenant, database_url
):
    (import_dir / "a-corrupt.parquet").write_bytes(b"not parquet")
    _write_jsonl(import_dir / "b.jsonl", tenant, ["still lands"])

    result = _run(instance, database_url, raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_node_events if e.is_failure]
    assert "a-corrupt.parquet" in str(failure.step_failure_data.user_failure_data.metadata)
    assert _contents(database_url, tenant) == ["still lands"]


def test_the_job_and_schedule_load_in_definitions():
    defs = Definitions(
        jobs=[bulk_import], schedules=[bulk_import_schedule], resources=default_resources()
    )

    assert defs.resolve_job_def("bulk_import").name == "bulk_import"
    assert defs.resolve_schedule_def("bulk_import_schedule").job_name == "bulk_import"
