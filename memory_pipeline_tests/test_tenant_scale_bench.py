"""Bench G's pure parts: the import file it loads, how it summarises sensor ticks, the UI pages
it opens and how it compares search across tenant counts."""

import json

from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.tenant_scale import (
    looked_up_partition,
    partitions_url,
    search_ratios,
    tick_summary,
    write_import_file,
)


def test_the_import_file_is_the_same_for_the_same_seed_and_spans_every_tenant(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rows = write_import_file(first, tenants=50, max_memories=5, seed=3)
    assert write_import_file(second, tenants=50, max_memories=5, seed=3) == rows
    assert first.read_text() == second.read_text()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    per_tenant = {}
    for r in records:
        per_tenant[r["user_id"]] = per_tenant.get(r["user_id"], 0) + 1
        assert set(r) == {"user_id", "project_id", "raw_data", "external_id"}
    assert len(per_tenant) == 50 and set(per_tenant.values()) <= set(range(1, 6))
    assert len({r["external_id"] for r in records}) == rows == len(records)


def test_tick_summary_gives_percentiles_runs_and_the_first_errors():
    ticks = [
        {"seconds": s, "runs": r, "error": e}
        for s, r, e in [(0.1, 0, None), (0.2, 2, None), (61.0, 0, "sensor tick timed out")]
    ]
    summary = tick_summary(ticks)
    assert summary["n"] == 3 and summary["runs_requested"] == 2
    assert summary["p50_ms"] == 200.0 and summary["max_ms"] == 61000.0
    assert summary["errors"] == ["sensor tick timed out"]


def test_search_p50_is_compared_with_the_home_with_fewest_tenants():
    homes = {
        "100000": {"tenants": 100_000, "search_cold": {"p50_ms": 90.0}, "search_warm": {}},
        "1000": {"tenants": 1_000, "search_cold": {"p50_ms": 60.0}, "search_warm": {"p50_ms": 5}},
        "broken": {"error": "up exited"},
    }
    assert search_ratios(homes) == [
        ("search cold p50, 100,000 / 1,000 tenants", 1.5),
        ("search warm p50, 100,000 / 1,000 tenants", None),
    ]
    assert search_ratios({"1000": homes["1000"]}) == []


def test_a_partition_page_url_escapes_a_tenant_key_and_the_lookup_names_its_partition():
    base = "http://127.0.0.1:3000"
    assert partitions_url(base) == f"{base}/assets/tenant_memory_vectors?view=partitions"
    assert partitions_url(base, "ann lee/notes%2F2026").endswith(
        "&partition=ann%20lee%2Fnotes%252F2026"
    )
    printed = json.dumps(
        [
            {"user_id": "u", "project_id": "a", "partition": "shard-0001"},
            {"user_id": "u", "project_id": "b", "partition": "shard-0491"},
        ]
    )
    assert looked_up_partition(printed, Tenant("u", "b")) == "shard-0491"
