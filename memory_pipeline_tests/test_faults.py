"""Faults under `memory-pipeline up`: after each one, every row ends embedded (or terminal with a
reason) with no human action, and Postgres, pgvector and Chroma agree (issue 15).

The cases share one `up` on a temporary home (the SIGTERM case replaces it, so it runs last);
each case writes its own tenants' rows, injects its fault and waits for every row with a
deadline. The cases themselves live in ``fault_harness.py``, which also measures the table of
docs/operations.md against any checkout.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from memory_pipeline_tests.fault_harness import (
    Home,
    Outcome,
    Up,
    case_chroma_killed,
    case_concurrent_writers,
    case_hostile_rows,
    case_postgres_killed_idle,
    case_postgres_killed_mid_run,
    case_process_calls_and_sensor,
    case_run_worker_killed,
    case_up_terminated,
    case_updates_and_deletes,
)

pytestmark = pytest.mark.e2e
#: Per case: the first run of a case loads the model (~10 s here, minutes when the machine is
#: shared), and retries wait out their backoff.
CASE_TIMEOUT_SECONDS = 420.0

Platform = tuple[Home, list[Up]]


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    home = Home.create()
    holder = [Up.start(home)]
    try:
        yield home, holder
    finally:
        for up in holder:
            up.stop()
            up.kill()
        home.cli("db", "stop", timeout=120)
        shutil.rmtree(home.path, ignore_errors=True)


def _recovers(platform: Platform, case: Callable[[Home, list[Up], float], Outcome]) -> Outcome:
    home, holder = platform
    out = case(home, holder, CASE_TIMEOUT_SECONDS)
    print(out.line())  # the row of the fault table (pytest -rP shows it)
    assert out.clean, out.line()
    return out


def test_a_run_worker_killed_mid_batch_leaves_no_row_behind(platform):
    _recovers(platform, case_run_worker_killed)


def test_chroma_killed_mid_run_is_restarted_and_the_run_finishes(platform):
    _recovers(platform, case_chroma_killed)


def test_postgres_killed_mid_run_is_restarted_and_the_run_finishes(platform):
    _recovers(platform, case_postgres_killed_mid_run)


def test_postgres_killed_while_idle_is_restarted_and_new_rows_embed(platform):
    _recovers(platform, case_postgres_killed_idle)


def test_two_process_calls_and_the_sensor_on_the_same_tenants_duplicate_nothing(platform):
    out = _recovers(platform, case_process_calls_and_sensor)
    assert not out.note, out.note


def test_twenty_writers_with_long_open_transactions_lose_no_row(platform):
    _recovers(platform, case_concurrent_writers)


def test_updates_and_deletes_during_a_run_end_in_both_stores(platform):
    _recovers(platform, case_updates_and_deletes)


def test_hostile_rows_mark_only_themselves_beside_other_tenants_rows(platform):
    _recovers(platform, case_hostile_rows)


def test_up_stopped_mid_run_and_started_again_frees_the_interrupted_runs_tenants(platform):
    home, holder = platform
    _recovers(platform, case_up_terminated)
    # the interrupted run ended (failed on the way out, or by the new `up` at its start):
    # none of the first `up`'s runs still claims to run
    first_up_runs = home.sql(
        """SELECT run_id, status FROM dagster.runs
           WHERE status IN ('NOT_STARTED', 'STARTING', 'STARTED', 'CANCELING')
             AND create_timestamp < %s""",
        (holder[0].started_at,),
    )
    assert first_up_runs == []
