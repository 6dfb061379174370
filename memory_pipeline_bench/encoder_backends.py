"""Encoder backends side by side (part of bench A): rows/s, ÷ torch float32, cosine to it.

Every backend encodes the same extracted, chunked work logs in interleaved rounds (the order
reversed every other round), so load from elsewhere on the machine drifts over all alike;
``python -m memory_pipeline_bench.encoder_backends`` runs it alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memory_pipeline.embedding import Embedder
from memory_pipeline.settings import DEFAULT_EMBEDDING_MODEL, EMBEDDING_BACKENDS

#: torch in float32 is the reference; ``torch`` is the product default (bfloat16 where native).
REFERENCE = "torch-fp32"


def backend_embedders(model_name: str, exports_dir: Path) -> dict[str, Embedder]:
    """One embedder per backend, plus torch in float32 (the reference), sharing nothing."""
    embedders = {REFERENCE: Embedder(model_name, precision="float32")}
    for backend in EMBEDDING_BACKENDS:
        embedders[backend] = Embedder(model_name, backend=backend, exports_dir=exports_dir)
    return embedders


#: Short questions whose one-at-a-time encoding (a search's query) is timed.
QUERIES = (
    "what broke the nightly import",
    "who fixed the flaky deploy last week",
    "when did we move settings onto pydantic-settings",
    "why are chroma upserts split into batches",
)


def measure(
    embedders: dict[str, Embedder], docs: Sequence[list[str]], rounds: int = 3
) -> dict[str, dict[str, float]]:
    """Rows/s of each embedder over ``docs`` (each a row's chunks), and cosine to the reference.

    The first row of each embedder is encoded untimed first (loads, exports, warms up).
    """
    for embedder in embedders.values():
        embedder.embed_batch(docs[0] * 8)
    seconds = dict.fromkeys(embedders, 0.0)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    names = list(embedders)
    for r in range(rounds):
        part = docs[r * len(docs) // rounds : (r + 1) * len(docs) // rounds]
        chunks = [c for row in part for c in row]
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            out = embedders[name].embed_batch(chunks)
            seconds[name] += time.perf_counter() - start
            vectors[name].append(out)
    query_ms: dict[str, list[float]] = {name: [] for name in embedders}
    for embedder in embedders.values():  # the second query makes torch's trace (0012)
        embedder.embed_queries(["warm up"])
        embedder.embed_queries(["warm up again"])
    for r in range(rounds * 10):
        for name in names if r % 2 == 0 else reversed(names):
            query = QUERIES[r % len(QUERIES)]
            start = time.perf_counter()
            embedders[name].embed_queries([query])
            query_ms[name].append(1000 * (time.perf_counter() - start))
    reference = np.concatenate(vectors[REFERENCE])
    rows = len(docs)
    figures: dict[str, dict[str, float]] = {}
    for name in names:
        cosines = (np.concatenate(vectors[name]) * reference).sum(axis=1)
        figures[name] = {
            "rows_per_s": rows / seconds[name],
            "vs_torch_fp32": seconds[REFERENCE] / seconds[name],
            "cosine_mean": float(cosines.mean()),
            "cosine_min": float(cosines.min()),
            "query_ms_p50": float(np.median(query_ms[name])),
        }
    return figures


def format_table(
    figures: dict[str, dict[str, float]], recall: dict[str, float] | None = None
) -> str:
    """A markdown table of :func:`measure`'s figures (and held-out recall@10 where given)."""
    head = "| backend | rows/s | ÷ torch fp32 | query ms (p50) | cosine to fp32 (mean / min) |"
    rule = "|---|---|---|---|---|"
    if recall is not None:
        head, rule = head + " held-out recall@10 |", rule + "---|"
    lines = [head, rule]
    for name, f in figures.items():
        line = (
            f"| {name} | {f['rows_per_s']:.1f} | {f['vs_torch_fp32']:.2f} | "
            f"{f['query_ms_p50']:.1f} | "
            f"{f['cosine_mean']:.4f} / {f['cosine_min']:.4f} |"
        )
        if recall is not None:
            line += f" {recall[name]:.3f} |" if name in recall else " |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from memory_pipeline.extraction import extract_memory
    from memory_pipeline_bench.synthetic import work_logs

    parser = argparse.ArgumentParser(prog="python -m memory_pipeline_bench.encoder_backends")
    parser.add_argument("--rows", type=int, default=300, help="synthetic work logs encoded")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exports", type=Path, default=Path(".memory_pipeline/bench/models"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    embedders = backend_embedders(DEFAULT_EMBEDDING_MODEL, args.exports.resolve())
    chunker = embedders[REFERENCE]
    docs = [chunker.chunk_text(extract_memory(d).text) for d in work_logs(args.rows, 0)]
    figures = measure(embedders, docs, args.rounds)
    print(json.dumps(figures) if args.json else format_table(figures))
    _write_results_file(figures, vars(args))
    return 0


def _write_results_file(figures: dict[str, dict[str, float]], options: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from memory_pipeline_bench.results import (
        RESULTS_DIR,
        SectionResult,
        cpu_description,
        results_file_name,
        write_json,
    )

    section = SectionResult("encoders")
    for name, f in figures.items():
        section.add(f"encoder {name}: raw encode", f["rows_per_s"], "rows/s")
        section.add(f"  encoder {name} / torch fp32", f["vs_torch_fp32"], "ratio")
        section.add(f"  encoder {name}: least cosine to torch fp32", f["cosine_min"], "cosine")
    section.details = {**as_details(figures), "options": {k: str(v) for k, v in options.items()}}
    cpu, started = cpu_description(), datetime.now(UTC)
    path = RESULTS_DIR / results_file_name(cpu, started).replace(".json", "_encoders.json")
    write_json(path, [section], {"started": started.isoformat(), "cpu": cpu})
    print(f"results: {path}", file=sys.stderr)


def as_details(figures: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {"reference": REFERENCE, "backends": figures}


if __name__ == "__main__":
    sys.exit(main())
