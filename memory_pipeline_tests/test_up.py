"""`up` owns its home: one `up` per home, and at start it frees the runs whose workers died."""

import os
import subprocess
import sys

import pytest
from dagster import DagsterRunStatus
from dagster._core.events import EngineEventData

from memory_pipeline.defs.instance import fail_orphaned_runs, fail_runs_whose_worker_exited
from memory_pipeline.local_services.home_lock import exclusive_home_lock
from memory_pipeline.settings import Settings
from memory_pipeline.up import run_up
from memory_pipeline_tests.dagster_runs import record_run


def test_runs_that_hold_a_worker_are_failed_and_the_others_left_alone(instance):
    statuses = [
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
        DagsterRunStatus.SUCCESS,
    ]
    runs = {s: record_run(instance, status=s).run_id for s in statuses}

    freed = fail_orphaned_runs(instance, "its worker is gone")

    after = {s: instance.get_run_by_id(run_id).status for s, run_id in runs.items()}
    assert after == {
        DagsterRunStatus.NOT_STARTED: DagsterRunStatus.FAILURE,
        DagsterRunStatus.STARTING: DagsterRunStatus.FAILURE,
        DagsterRunStatus.STARTED: DagsterRunStatus.FAILURE,
        DagsterRunStatus.CANCELING: DagsterRunStatus.CANCELED,
        DagsterRunStatus.SUCCESS: DagsterRunStatus.SUCCESS,
    }
    assert len(freed) == 4


def _started_by(instance, pid: int | None) -> str:
    run = record_run(instance, status=DagsterRunStatus.STARTED)
    if pid is not None:  # what the code server's worker records as it starts
        instance.report_engine_event(
            f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
        )
    return run.run_id


def test_started_runs_whose_worker_exited_unrecorded_are_failed_while_up_runs(instance):
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead = _started_by(instance, int(exited.stdout))
    alive = _started_by(instance, os.getpid())
    unknown = _started_by(instance, None)  # not started yet: run monitoring's start timeout
    done = record_run(instance, status=DagsterRunStatus.SUCCESS).run_id

    freed = fail_runs_whose_worker_exited(instance, "its run worker exited")

    assert freed == [dead]
    status = {r: instance.get_run_by_id(r).status for r in (dead, alive, unknown, done)}
    assert status == {
        dead: DagsterRunStatus.FAILURE,
        alive: DagsterRunStatus.STARTED,
        unknown: DagsterRunStatus.STARTED,
        done: DagsterRunStatus.SUCCESS,
    }
    assert fail_runs_whose_worker_exited(instance, "again") == []


def test_a_second_up_of_the_same_home_is_refused(tmp_path):
    settings = Settings(home=tmp_path)
    with (
        exclusive_home_lock(tmp_path, "up"),
        pytest.raises(RuntimeError, match="another `memory-pipeline up` is running"),
    ):
        run_up(settings, "127.0.0.1", 1, 2, announce=print)
