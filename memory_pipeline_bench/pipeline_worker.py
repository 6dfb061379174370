"""The pipeline half of the throughput benchmark, run in its own process so its peak RSS is its own.

``python -m memory_pipeline_bench.pipeline_worker [--batch-rows N]`` loads the model (untimed,
with one warm-up encode) and prints ``{"ready": true}``; then, for each ``USER<TAB>PROJECT`` line
on stdin, it times ``MemoryStore.process_pending`` for that tenant and prints a JSON line with
the seconds and counts. At the end of input it prints its peak RSS (``ru_maxrss``) and where the
time went. Driving it round by round lets the benchmark interleave it with the raw encode.

Where the time went is measured by wrapping the store step's stages (claim, extraction, encode,
Chroma upsert, Postgres writes, keyword index upkeep) with timers; a few clock reads per batch
cost nothing measurable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
import time
from collections.abc import Sequence

from memory_pipeline import MemoryStore
from memory_pipeline.storage import claims, row_outcomes
from memory_pipeline_bench.stage_timer import StageTimer


def instrument(store: MemoryStore, timer: StageTimer) -> None:
    """Time the stages of the store step in this process (module attributes and instances)."""
    # the package re-exports a function of the same name, so fetch the modules themselves
    process_module = importlib.import_module("memory_pipeline.processing.process")
    prepare_module = importlib.import_module("memory_pipeline.processing.prepare")
    store.embedder.embed_batch = timer.wrap("encode", store.embedder.embed_batch)  # type: ignore[method-assign]
    store.embedder.chunk_text = timer.wrap("chunk", store.embedder.chunk_text)  # type: ignore[method-assign]
    store.vector_store.upsert_vectors = timer.wrap(  # type: ignore[method-assign]
        "chroma_upsert", store.vector_store.upsert_vectors
    )
    prepare_module.extract_memory = timer.wrap("extract", prepare_module.extract_memory)  # type: ignore[assignment]
    for name, stage in (
        ("compact_term_stats", "pg_keyword_stats"),
        ("refresh_keyword_index", "pg_keyword_champions"),
    ):
        setattr(process_module, name, timer.wrap(stage, getattr(process_module, name)))
    for module, name, stage in (
        (claims, "claim_workable_rows", "pg_claim"),
        (row_outcomes, "write_vectors", "pg_write_vectors"),
        (row_outcomes, "mark_embedded", "pg_mark_embedded"),
    ):
        setattr(module, name, timer.wrap(stage, getattr(module, name)))


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports ``ru_maxrss`` in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-rows", type=int, default=None)
    args = parser.parse_args(argv)

    with MemoryStore.from_env() as store:
        store.embedder.embed_batch(["warm up the model before the clock starts"])
        store.ensure_model_index()
        timer = StageTimer()
        instrument(store, timer)
        overrides = {"batch_rows": args.batch_rows} if args.batch_rows else {}
        options = store.process_options(**overrides)
        print(json.dumps({"ready": True, "peak_rss_bytes": peak_rss_bytes()}), flush=True)
        for line in sys.stdin:  # one "USER<TAB>PROJECT" per round
            user_id, project_id = line.rstrip("\n").split("\t")
            start = time.perf_counter()
            counts = store.process_pending(user_id, project_id, options=options)
            seconds = time.perf_counter() - start
            print(json.dumps({"seconds": seconds, "counts": counts}), flush=True)
        print(
            json.dumps(
                {
                    "batch_rows": options.batch_rows,
                    "peak_rss_bytes": peak_rss_bytes(),
                    "stages": dict(timer.seconds),
                    "stage_calls": dict(timer.calls),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
