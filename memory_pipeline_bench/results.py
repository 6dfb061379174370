"""Benchmark results: named measurements with their targets, printed as a table and as JSON."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_STARTED = time.monotonic()
#: Where `make bench` keeps one results file per run, named by date and CPU (docs/benchmarks.md).
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: CPU flags that change the model's speed the most (bfloat16 and wide vector units).
SPEED_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def progress(message: str) -> None:
    """A progress line on stderr, stamped with seconds since the benchmark started."""
    print(f"[bench {time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean/max in milliseconds, and the sample count."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
        "max_ms": max(ms) if ms else float("nan"),
    }


@dataclass
class Metric:
    """One printed figure; ``met`` is None when the figure has no target."""

    name: str
    value: float | None
    unit: str
    target: str | None = None
    met: bool | None = None


@dataclass
class SectionResult:
    """The measurements of one benchmark (pipeline, search, scale)."""

    section: str
    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
    ) -> Metric:
        """Record a figure, checking it against ``at_least`` / ``at_most`` when given."""
        target: str | None = None
        met: bool | None = None
        if at_least is not None:
            target = f">= {at_least:.4g}"
            met = value is not None and value >= at_least
        elif at_most is not None:
            target = f"<= {at_most:.4g}"
            met = value is not None and value <= at_most
        metric = Metric(name, value, unit, target, met)
        self.metrics.append(metric)
        return metric


def format_value(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(sections: Sequence[SectionResult]) -> str:
    """The summary table: one line per figure, with its target and whether it is met."""
    header = ("section", "measurement", "value", "unit", "target", "met")
    rows: list[tuple[str, ...]] = []
    for section in sections:
        if section.error:
            first_line = section.error.strip().splitlines()[-1][:120]
            rows.append((section.section, f"ERROR: {first_line}", "", "", "", "no"))
        for m in section.metrics:
            met = "" if m.met is None else ("yes" if m.met else "NO")
            rows.append(
                (section.section, m.name, format_value(m.value), m.unit, m.target or "", met)
            )
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for index, row in enumerate((header, *rows)):
        cells = [
            str(cell).rjust(widths[i]) if i == 2 else str(cell).ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, sections: Sequence[SectionResult], run_info: dict[str, Any]) -> None:
    """Write every figure and detail of the run to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"run": run_info, "sections": [asdict(s) for s in sections]}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def cpu_description() -> dict[str, Any]:
    """The CPU a run measured: model name, the flags of :data:`SPEED_FLAGS` it has, cores."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "flags": [f for f in SPEED_FLAGS if f in flags],
        "cores": os.cpu_count(),
    }


def cpu_slug(cpu: dict[str, Any]) -> str:
    """A file-name form of a CPU: model words, its speed flags and core count."""
    words = re.sub(r"\((R|TM|tm)\)|\bprocessor\b|\bcpu\b", " ", str(cpu["model"]), flags=re.I)
    parts = [*words.split(), *cpu.get("flags", [])[:1], f"{cpu.get('cores')}c"]
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def results_file_name(cpu: dict[str, Any], started: datetime) -> str:
    """``<UTC date and time>_<cpu slug>.json``: files of one CPU sort by date."""
    return f"{started:%Y-%m-%dT%H%M}_{cpu_slug(cpu)}.json"
