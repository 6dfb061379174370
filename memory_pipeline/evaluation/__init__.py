"""Retrieval evaluation on public benchmarks (LoCoMo): ``python -m memory_pipeline.evaluation.locomo``."""
