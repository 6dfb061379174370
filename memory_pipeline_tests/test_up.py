"""`up` owns its home: one `up` per home, and at start it frees the runs whose workers died."""

import pytest
from dagster import DagsterRunStatus

from memory_pipeline.defs.instance import fail_orphaned_runs
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


def test_a_second_up_of_the_same_home_is_refused(tmp_path):
    settings = Settings(home=tmp_path)
    with (
        exclusive_home_lock(tmp_path, "up"),
        pytest.raises(RuntimeError, match="another `memory-pipeline up` is running"),
    ):
        run_up(settings, "127.0.0.1", 1, 2, announce=print)
