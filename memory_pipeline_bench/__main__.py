"""``python -m memory_pipeline_bench`` (``make bench``): throughput, search latency, keyword recall, scale.

Runs the benchmarks named by ``--only`` (default: all six), each in its own sub-home of the
bench home (``MEMORY_PIPELINE_HOME``, default ``.memory_pipeline/bench``), prints progress on
stderr and a summary table on stdout, and writes every figure to ``<bench home>/results.json``.
Exit status 0 when every benchmark ran (targets met or not), 1 when one failed to run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from memory_pipeline_bench.homes import bench_home
from memory_pipeline_bench.results import (
    RESULTS_DIR,
    SectionResult,
    cpu_description,
    format_table,
    progress,
    results_file_name,
    write_json,
)

SECTIONS = ("pipeline", "search", "keyword", "scale", "service", "celery", "tenants")
#: Run only when named: section G takes an hour or more at its default sizes.
DEFAULT_SECTIONS = SECTIONS[:-1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m memory_pipeline_bench",
        description="Benchmarks of memory_pipeline: pipeline throughput (A), search latency (B), "
        "1,000 tenants under `memory-pipeline up` (C), keyword search against exact BM25 (D), "
        "the memory service over HTTP (E), one backlog on 1 and 2 Celery workers (F), 10k and "
        "100k small tenants (G).",
    )
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_SECTIONS),
        help="comma-separated benchmarks to run: pipeline,search,keyword,scale,service,celery "
        "(the default), and tenants (G, only when named)",
    )
    parser.add_argument("--seed", type=int, default=0, help="synthetic corpus seed")
    a = parser.add_argument_group("pipeline (A)")
    a.add_argument("--rows", type=int, default=5000, help="work logs in the throughput tenant")
    a.add_argument("--per-row-sample", type=int, default=300, help="rows for the per-row path")
    a.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds of raw / pipeline / per-row"
    )
    a.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="override ProcessOptions.batch_rows for the pipeline run",
    )
    a.add_argument(
        "--backend-rows",
        type=int,
        default=300,
        help="work logs each encoder backend encodes side by side (0: skip)",
    )
    b = parser.add_argument_group("search (B)")
    b.add_argument("--search-rows", type=int, default=100_000, help="memories in the big tenant")
    b.add_argument(
        "--search-unique-texts",
        type=int,
        default=2000,
        help="distinct texts embedded for real; other rows reuse them with noise",
    )
    b.add_argument("--search-tenants", type=int, default=1000, help="small tenants")
    b.add_argument("--search-tenant-rows", type=int, default=10, help="memories per small tenant")
    b.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    d = parser.add_argument_group("keyword (D)")
    d.add_argument("--keyword-rows", type=int, default=100_000, help="memories in its tenant")
    d.add_argument("--keyword-queries", type=int, default=50, help="champion-list queries")
    c = parser.add_argument_group("scale (C)")
    c.add_argument("--scale-rows", type=int, default=10_000, help="rows inserted at once")
    c.add_argument("--scale-tenants", type=int, default=1000, help="tenants they spread over")
    c.add_argument(
        "--latency-rows",
        type=int,
        default=20,
        help="rows inserted one at a time for new-row-to-searchable latency",
    )
    e = parser.add_argument_group("service (E)")
    e.add_argument("--service-rows", type=int, default=1000, help="memories in the search tenant")
    e.add_argument("--service-queries", type=int, default=100, help="queries per latency round")
    e.add_argument("--service-rounds", type=int, default=3, help="in-process / HTTP rounds")
    e.add_argument(
        "--service-seconds", type=float, default=20.0, help="seconds per concurrency level"
    )
    e.add_argument(
        "--service-batch-rows", type=int, default=10_000, help="memories sent in batches of 1,000"
    )
    f = parser.add_argument_group("celery (F)")
    f.add_argument("--celery-tenants", type=int, default=24, help="tenants of each backlog")
    f.add_argument("--celery-rows-per-tenant", type=int, default=50, help="rows per tenant")
    f.add_argument(
        "--celery-rows-per-run", type=int, default=200, help="MEMORY_PIPELINE_MAX_ROWS_PER_RUN"
    )
    f.add_argument(
        "--celery-overhead-runs",
        type=int,
        default=3,
        help="single-row runs per block (blocks: Celery, in-process, in-process, Celery)",
    )
    g = parser.add_argument_group("tenants (G)")
    g.add_argument(
        "--tenant-counts",
        default="1000,10000,100000",
        help="comma-separated tenant counts, each in a fresh home; search p50 is compared with "
        "the smallest's",
    )
    g.add_argument("--max-memories", type=int, default=5, help="notes per tenant: 1 to this")
    g.add_argument("--new-rows", type=int, default=20, help="rows then added one at a time")
    g.add_argument(
        "--tenant-homes",
        default="",
        help="comma-separated homes an earlier run left, measured as they are (no import)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        print(
            f"error: unknown benchmark(s) {', '.join(unknown)}; use {','.join(SECTIONS)}",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = bench_home()
    started = datetime.now(UTC)
    progress(f"bench home {base}; running {', '.join(wanted)}")

    runners: dict[str, Callable[[], SectionResult]] = {}
    if "pipeline" in wanted:
        from memory_pipeline_bench import pipeline_throughput

        runners["pipeline"] = lambda: pipeline_throughput.run(
            base,
            rows=args.rows,
            per_row_sample=args.per_row_sample,
            seed=args.seed,
            rounds=args.rounds,
            batch_rows=args.batch_rows,
            backend_rows=args.backend_rows,
        )
    if "search" in wanted:
        from memory_pipeline_bench import search_latency

        runners["search"] = lambda: search_latency.run(
            base,
            rows=args.search_rows,
            unique_texts=args.search_unique_texts,
            tenants=args.search_tenants,
            tenant_rows=args.search_tenant_rows,
            queries=args.queries,
            seed=args.seed,
        )
    if "keyword" in wanted:
        from memory_pipeline_bench import keyword_recall

        runners["keyword"] = lambda: keyword_recall.run(
            base, rows=args.keyword_rows, queries=args.keyword_queries, seed=args.seed
        )
    if "scale" in wanted:
        from memory_pipeline_bench import scale

        runners["scale"] = lambda: scale.run(
            base,
            rows=args.scale_rows,
            tenants=args.scale_tenants,
            latency_rows=args.latency_rows,
            seed=args.seed,
        )

    if "service" in wanted:
        from memory_pipeline_bench import service_latency

        runners["service"] = lambda: service_latency.run(
            base,
            rows=args.service_rows,
            queries=args.service_queries,
            rounds=args.service_rounds,
            seconds=args.service_seconds,
            batch_rows=args.service_batch_rows,
            seed=args.seed,
        )

    if "celery" in wanted:
        from memory_pipeline_bench import celery_scale

        runners["celery"] = lambda: celery_scale.run(
            base,
            tenants=args.celery_tenants,
            rows_per_tenant=args.celery_rows_per_tenant,
            rows_per_run=args.celery_rows_per_run,
            overhead_runs=args.celery_overhead_runs,
            seed=args.seed,
        )

    if "tenants" in wanted:
        from memory_pipeline_bench import tenant_scale

        runners["tenants"] = lambda: tenant_scale.run(
            base,
            tenant_counts=[int(n) for n in args.tenant_counts.split(",") if n.strip()],
            max_memories=args.max_memories,
            new_rows=args.new_rows,
            seed=args.seed,
            existing_homes=[Path(p) for p in args.tenant_homes.split(",") if p.strip()],
        )

    results: list[SectionResult] = []
    for name in SECTIONS:
        if name not in runners:
            continue
        begin = time.monotonic()
        try:
            result = runners[name]()
        except Exception as exc:
            traceback.print_exc()
            result = SectionResult(name, error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - begin
        progress(f"{name}: done in {result.seconds:.0f} s")
        results.append(result)

    run_info = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "options": vars(args),
        # sizes that differ from the defaults: the report shows them beside the figures
        "changed_options": {
            k: v for k, v in vars(args).items() if k != "only" and v != parser.get_default(k)
        },
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu": cpu_description(),
        "load_average_at_end": os.getloadavg(),
        # the models the sections ran with (MEMORY_PIPELINE_EMBEDDING_MODEL, _RERANK_MODEL)
        "models": _configured_models(),
    }
    out = base / "results.json"
    write_json(out, results, run_info)
    record = RESULTS_DIR / results_file_name(run_info["cpu"], started)
    write_json(record, results, run_info)
    print()
    print(format_table(results))
    print(f"\n(all figures: {out}; kept as {record})")
    return 1 if any(r.error for r in results) else 0


def _configured_models() -> dict[str, str | None]:
    from memory_pipeline.settings import Settings

    settings = Settings.from_env()
    return {
        "embedding_model": settings.embedding_model,
        "embedding_backend": settings.embedding_backend,
        "rerank_model": settings.rerank_model,
    }


if __name__ == "__main__":
    sys.exit(main())
