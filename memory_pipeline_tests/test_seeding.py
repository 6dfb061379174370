"""Seeding writes a memory the way the store step would have (tests' and benches' setup)."""

from __future__ import annotations

from collections.abc import Callable

from memory_pipeline.extraction import extract_memory
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.seeding import ReadyMemory, load_embedded_memories
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import vector_id

DOC = {"task": "fix flaky deploy", "summary": "The deploy key rotated", "date": "2025-03-04"}
COMPARED = (
    "status",
    "memory_type",
    "occurred_at",
    "search_text",
    "content_hash",
    "embedding_model",
    "chunk_count",
    "text_truncated",
    "raw_data",
)


def test_a_seeded_memory_matches_one_the_pipeline_embedded(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    model = store.embedder.model_id
    piped, seeded = new_tenant("piped"), new_tenant("seeded")
    piped_id = store.create_memory_log(piped.user_id, piped.project_id, DOC)
    store.process_pending(piped.user_id, piped.project_id)

    extracted = extract_memory(DOC)
    vectors = store.embedder.embed_batch([extracted.text])
    (seeded_id,) = load_embedded_memories(
        store.db,
        store.vector_store,
        model,
        seeded,
        [ReadyMemory.of("d1", DOC, extracted, model)],
        vectors,
    )

    a, b = store.get_memory_log(piped_id), store.get_memory_log(seeded_id)
    assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
    hits = store.search_similar_memories(
        "deploy key rotated", seeded.user_id, seeded.project_id, mode="vector"
    )
    assert [h.log_id for h in hits] == [seeded_id]
    stored = store.vector_store.get_vectors(seeded, [vector_id(seeded_id, 0)])
    assert list(stored) == [vector_id(seeded_id, 0)]
