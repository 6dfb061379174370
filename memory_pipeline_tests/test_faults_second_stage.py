"""The fault suite's invariants with a second stage (issue 27, docs/decisions/0153): the batch
that writes the first stage's vectors also writes mpnet's into pgvector, and after a fault every
embedded row's chunks still have exactly one vector of each model, none of a deleted row's."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from memory_pipeline_tests.fault_harness import (
    Home,
    Up,
    case_run_worker_killed,
    case_updates_and_deletes,
)
from memory_pipeline_tests.test_faults import CASE_TIMEOUT_SECONDS, Platform

pytestmark = pytest.mark.e2e
MPNET = "sentence-transformers/all-mpnet-base-v2"


@pytest.fixture(scope="module")
def staged_platform() -> Iterator[Platform]:
    home = Home.create(MEMORY_PIPELINE_RERANK_MODEL=MPNET)
    holder = [Up.start(home)]
    try:
        yield home, holder
    finally:
        for up in holder:
            up.stop()
            up.kill()
        home.cli("db", "stop", timeout=120)
        shutil.rmtree(home.path, ignore_errors=True)


@pytest.mark.parametrize("case", [case_run_worker_killed, case_updates_and_deletes])
def test_a_fault_with_a_second_stage_loses_and_duplicates_no_vector_of_either_model(
    staged_platform, case
):
    home, holder = staged_platform
    out = case(home, holder, CASE_TIMEOUT_SECONDS)
    print(out.line(), f"second-stage vectors: {out.second_stage_vectors}")
    assert out.clean, out.line()
    # every embedded row of the case has its second-stage vectors: the comparison held some
    assert out.second_stage_vectors >= out.rows > 0
    dims = home.sql(
        "SELECT DISTINCT vector_dims(embedding) AS dims FROM memory_vector "
        "WHERE embedding_model = %s",
        (MPNET,),
    )
    assert dims == [{"dims": 768}]
