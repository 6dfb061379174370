"""The fault suite's invariants in a sharded home (docs/decisions/0203): tenants share shard
collections, and still no row is lost, duplicated, stuck or left stale after a fault."""

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


@pytest.fixture(scope="module")
def sharded_platform() -> Iterator[Platform]:
    # sharded from the first tenant, with few shards so the cases' tenants share them
    home = Home.create(MEMORY_PIPELINE_SHARD_AFTER_TENANTS="0", MEMORY_PIPELINE_TENANT_SHARDS="2")
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
def test_a_fault_in_a_sharded_home_loses_and_duplicates_nothing(sharded_platform, case):
    home, holder = sharded_platform
    out = case(home, holder, CASE_TIMEOUT_SECONDS)
    print(out.line())
    assert out.clean, out.line()
    shards = home.sql("SELECT DISTINCT shard FROM memory_tenant")
    assert shards and all(r["shard"] is not None for r in shards)  # every tenant in a shard
    assert home.sql("SELECT shards FROM tenant_layout") == [{"shards": 2}]
