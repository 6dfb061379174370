"""Benchmarks of memory_pipeline (``make bench`` = ``python -m memory_pipeline_bench``).

- ``pipeline_throughput`` (A): store-step throughput against raw encoding and a per-row path;
- ``search_latency`` (B): search p50/p95 on a 100k-memory tenant and across many small tenants;
- ``scale`` (C): many tenants' rows, and one new row, until searchable under ``memory-pipeline up``;
- ``synthetic``: the deterministic work-log corpus they all use.
"""
