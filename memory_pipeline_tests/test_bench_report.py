"""Bench results files: named by date and CPU; the report shows each CPU's latest figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from memory_pipeline_bench.report import latest_sections, render, write_into
from memory_pipeline_bench.results import SectionResult, results_file_name, write_json

AMX = {"model": "Intel(R) Xeon(R) Processor", "flags": ["amx_bf16", "avx512f"], "cores": 2}
EPYC = {"model": "AMD EPYC 9R14", "flags": ["avx512_bf16", "avx512f"], "cores": 2}


def _run(
    folder: Path, cpu: dict, when: datetime, section: str, p50: float, changed: dict | None = None
) -> None:
    result = SectionResult(section)
    result.add("100k tenant vector/chroma warm p50", p50, "ms", at_most=10)
    write_json(
        folder / results_file_name(cpu, when),
        [result],
        {"started": when.isoformat(), "cpu": cpu, "changed_options": changed or {}},
    )


def test_results_files_sort_by_date_within_a_cpu() -> None:
    early = results_file_name(AMX, datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    late = results_file_name(AMX, datetime(2026, 11, 2, 3, 4, tzinfo=UTC))
    assert early == "2026-01-02T0304_intel-xeon-amx-bf16-2c.json"
    assert sorted([late, early]) == [early, late]


def test_the_report_shows_the_latest_run_of_each_section_per_cpu(tmp_path: Path) -> None:
    _run(tmp_path, AMX, datetime(2026, 1, 1, tzinfo=UTC), "search", 12.0)
    _run(tmp_path, AMX, datetime(2026, 2, 1, tzinfo=UTC), "search", 8.0)
    _run(tmp_path, AMX, datetime(2026, 3, 1, tzinfo=UTC), "pipeline", 1.0)
    _run(tmp_path, EPYC, datetime(2026, 1, 15, tzinfo=UTC), "search", 10.5, {"queries": 20})
    broken = json.loads(next(tmp_path.glob("2026-03-01*")).read_text())
    broken["sections"][0]["error"] = "RuntimeError: boom"
    (tmp_path / "2026-04-01T0000_intel-xeon-amx-bf16-2c.json").write_text(json.dumps(broken))

    latest = latest_sections(tmp_path)
    assert set(latest) == {"intel-xeon-amx-bf16-2c", "amd-epyc-9r14-avx512-bf16-2c"}
    amx = latest["intel-xeon-amx-bf16-2c"]
    assert amx["search"].started.startswith("2026-02-01")
    assert amx["pipeline"].started.startswith("2026-03-01")  # the failed later run is passed over
    text = render(latest)
    assert (
        "| search | 100k tenant vector/chroma warm p50 | 8.00 | ms | <= 10 | yes | 2026-02-01 |"
        in text
    )
    assert "### AMD EPYC 9R14 (2 cores; avx512_bf16, avx512f)" in text
    assert "| **no** | 2026-01-15 (queries=20) |" in text  # a smaller run says so


def test_the_report_is_written_between_the_page_markers(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# B\n\n<!-- results:begin (generated) -->\nold\n<!-- results:end -->\ntail\n")
    write_into(page, "new table\n")
    assert page.read_text() == (
        "# B\n\n<!-- results:begin (generated) -->\nnew table\n<!-- results:end -->\ntail\n"
    )
