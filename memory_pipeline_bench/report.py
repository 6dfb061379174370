"""``python -m memory_pipeline_bench.report``: the latest figures per CPU, from the results files.

Reads every file ``make bench`` kept under :data:`~memory_pipeline_bench.results.RESULTS_DIR`,
takes for each CPU and benchmark section the most recent run that measured it, and prints one
Markdown table per CPU; ``--write docs/benchmarks.md`` puts them between that page's markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_pipeline_bench.results import RESULTS_DIR, cpu_slug, format_value

BEGIN = "<!-- results:begin"
END = "<!-- results:end -->"


@dataclass(frozen=True)
class SectionRun:
    """One benchmark section as one run measured it."""

    file: str
    started: str
    cpu: dict[str, Any]
    section: dict[str, Any]
    changed_options: dict[str, Any]

    @property
    def label(self) -> str:
        """The run's date, and its sizes where they differ from the bench's defaults."""
        changed = ", ".join(f"{k}={v}" for k, v in sorted(self.changed_options.items()))
        return f"{self.started[:10]} ({changed})" if changed else self.started[:10]


def latest_sections(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, SectionRun]]:
    """For each CPU (by slug), each section's most recent run without an error."""
    latest: dict[str, dict[str, SectionRun]] = {}
    for path in sorted(results_dir.glob("*.json")):  # names start with the date: oldest first
        document = json.loads(path.read_text())
        run = document.get("run", {})
        cpu = run.get("cpu") or {"model": "unknown CPU", "flags": [], "cores": run.get("cpus")}
        for section in document.get("sections", []):
            if section.get("error") or not section.get("metrics"):
                continue
            runs = latest.setdefault(cpu_slug(cpu), {})
            runs[section["section"]] = SectionRun(
                path.name, run.get("started", ""), cpu, section, run.get("changed_options") or {}
            )
    return latest


def render(latest: dict[str, dict[str, SectionRun]]) -> str:
    """Markdown: one heading and table per CPU, sections in the order of the bench."""
    if not latest:
        return "No results files yet: run `make bench`.\n"
    blocks = []
    for runs in latest.values():
        cpu = next(iter(runs.values())).cpu
        flags = ", ".join(cpu.get("flags") or []) or "no AMX/AVX-512"
        lines = [
            f"### {cpu['model']} ({cpu.get('cores')} cores; {flags})",
            "",
            "| section | measurement | value | unit | target | met | run |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, run in runs.items():
            for m in run.section["metrics"]:
                met = "" if m.get("met") is None else ("yes" if m["met"] else "**no**")
                lines.append(
                    f"| {name} | {m['name']} | {format_value(m.get('value'))} | {m['unit']} "
                    f"| {m.get('target') or ''} | {met} | {run.label} |"
                )
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def write_into(page: Path, text: str) -> None:
    """Replace what lies between the page's results markers with ``text``."""
    content = page.read_text()
    start, end = content.index(BEGIN), content.index(END)
    start = content.index("\n", start) + 1
    page.write_text(content[:start] + text + content[end:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memory_pipeline_bench.report")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument("--write", type=Path, help="a page with results markers to update")
    args = parser.parse_args(argv)
    text = render(latest_sections(args.results))
    if args.write:
        write_into(args.write, text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
