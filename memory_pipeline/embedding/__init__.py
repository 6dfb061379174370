"""Embedding: one sentence-transformers model per process, batch encoding, chunking by tokens."""

from memory_pipeline.embedding.embedder import Embedder, load_embedder
from memory_pipeline.embedding.model_source import resolve_model_source

__all__ = ["Embedder", "load_embedder", "resolve_model_source"]
