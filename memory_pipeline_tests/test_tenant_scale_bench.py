"""Bench G's pure parts: the import file it loads and how it summarises sensor ticks."""

import json

from memory_pipeline_bench.tenant_scale import tick_summary, write_import_file


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
