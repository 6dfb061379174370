"""Configuration picks the engine: MEMORY_PIPELINE_EXECUTOR and the run budgets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memory_pipeline.defs.executors import (
    BROKER_URL_ENV,
    backfill_policy,
    celery_config_source,
    celery_executor_config,
    executor_from_settings,
)
from memory_pipeline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def _settings(**changes: object) -> Settings:
    return Settings(home=Path("/tmp/unused")).with_overrides(**changes)


def test_the_default_executor_runs_steps_in_the_run_process():
    assert executor_from_settings(_settings()).name == "in_process"
    assert executor_from_settings(_settings(executor="multiprocess")).name == "multiprocess"


def test_the_celery_executor_takes_its_broker_from_the_environment_not_a_value():
    settings = _settings(executor="celery", celery_broker_url="redis://:secret@broker:6379/0")
    config = celery_executor_config(settings)
    assert config["broker"] == {"env": BROKER_URL_ENV}
    assert config["backend"] == {"env": BROKER_URL_ENV}
    assert "secret" not in json.dumps(config)
    assert executor_from_settings(settings).name == "celery"


def test_a_step_is_acknowledged_when_it_ends_so_a_lost_worker_gives_it_back():
    source = celery_config_source(_settings(celery_visibility_timeout=120))
    assert source["task_acks_late"] and source["task_reject_on_worker_lost"]
    assert source["worker_prefetch_multiplier"] == 1
    assert source["broker_transport_options"]["visibility_timeout"] == 120


def test_an_unknown_executor_or_celery_without_a_broker_is_refused(monkeypatch):
    monkeypatch.setenv("MEMORY_PIPELINE_EXECUTOR", "k8s")
    with pytest.raises(ValueError, match="MEMORY_PIPELINE_EXECUTOR must be"):
        Settings.from_env()
    with pytest.raises(ValueError, match=BROKER_URL_ENV):
        executor_from_settings(_settings(executor="celery"))


def test_a_backfill_is_one_run_unless_tenants_per_run_is_set():
    assert backfill_policy(_settings()).max_partitions_per_run is None  # single run
    assert backfill_policy(_settings(backfill_tenants_per_run=25)).max_partitions_per_run == 25


def test_the_same_definitions_load_with_the_celery_executor_and_keep_the_import_in_process():
    code = (
        "from memory_pipeline.definitions import defs\n"
        "print(defs.resolve_implicit_global_asset_job_def().executor_def.name,"
        " defs.resolve_job_def('bulk_import').executor_def.name,"
        " defs.resolve_assets_def('tenant_memory_vectors').backfill_policy.max_partitions_per_run)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "MEMORY_PIPELINE_EXECUTOR": "celery",
        BROKER_URL_ENV: "redis://127.0.0.1:1/0",
        "MEMORY_PIPELINE_BACKFILL_TENANTS_PER_RUN": "10",
    }
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.split() == ["celery", "in_process", "10"]
