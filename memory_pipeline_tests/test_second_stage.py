"""The second stage (issue 27): all-mpnet-base-v2 vectors written by the same batch as the first
stage's, replaced and deleted with the row; searches re-score the first stage's top results by
its cosine, explained, and never compare vectors of two models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.processing.prepare import content_hash
from memory_pipeline.search.second_stage import SecondStage
from memory_pipeline.tenancy import Tenant

MPNET = "sentence-transformers/all-mpnet-base-v2"
NOTES = [
    "The nightly import broke because the Chroma batch exceeded its maximum size.",
    "Fixed the flaky deploy by pinning the base image digest.",
    "Team lunch moved to Thursday; bring the quarterly slides.",
    "pgvector HNSW iterative scans keep filtered searches complete.",
]
WORDS = ["billing", "latency", "signup", "storage", "alerting", "search", "queue", "cache"]


@pytest.fixture(scope="module")
def staged(store: MemoryStore) -> MemoryStore:
    settings = store.settings.with_overrides(rerank_model=MPNET, rerank_depth=3, rerank_weight=0.6)
    with MemoryStore(settings, store.endpoints, embedder=store.embedder, migrate=False) as s:
        yield s


def _vectors(store: MemoryStore, log_ids: list[int]) -> dict[tuple[str, str], int]:
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT embedding_model, vector_id, vector_dims(embedding) AS dims FROM memory_vector "
            "WHERE log_id = ANY(%s)",
            (log_ids,),
        ).fetchall()
    return {(r["embedding_model"], r["vector_id"]): r["dims"] for r in rows}


def _chunk_text(store: MemoryStore, log_id: int, model: str) -> str:
    with store.db.connection() as conn:
        return conn.execute(
            "SELECT chunk_text FROM memory_vector WHERE log_id = %s AND embedding_model = %s",
            (log_id, model),
        ).fetchone()["chunk_text"]


def _write_notes(store: MemoryStore) -> tuple[Tenant, list[int]]:
    """A fresh tenant holding NOTES, not yet processed; the notes' log ids in order."""
    tenant = Tenant(f"stage-{uuid.uuid4().hex[:8]}", "p")
    written = [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": text})
        for text in NOTES
    ]
    return tenant, [getattr(w, "log_id", w) for w in written]


def test_second_stage_vectors_are_written_updated_and_deleted_with_the_row(staged):
    tenant, ids = _write_notes(staged)
    staged.process_pending(tenant.user_id, tenant.project_id)
    first = staged.embedder.model_id
    found = _vectors(staged, ids)
    assert {vid for (m, vid) in found if m == MPNET} == {vid for (m, vid) in found if m == first}
    assert {d for (m, _), d in found.items() if m == MPNET} == {768}
    assert {d for (m, _), d in found.items() if m == first} == {384}

    staged.update_memory_log(ids[0], {"content": "The nightly import now splits its batches."})
    staged.process_pending(tenant.user_id, tenant.project_id)
    assert "splits its batches" in _chunk_text(staged, ids[0], MPNET)
    assert _chunk_text(staged, ids[0], MPNET) == _chunk_text(staged, ids[0], first)

    assert staged.delete_memory_log(ids[1])
    staged.process_pending(tenant.user_id, tenant.project_id)
    assert not [key for key in _vectors(staged, ids) if key[1] == str(ids[1])]


def test_explain_shows_the_second_stage_and_its_cosine_is_the_second_models(staged):
    tenant, _ = _write_notes(staged)
    staged.process_pending(tenant.user_id, tenant.project_id)
    query = "why did the nightly import fail?"
    results = staged.search_similar_memories(
        query, tenant.user_id, tenant.project_id, 4, explain=True
    )
    assert results
    stage = staged.search.second_stage
    q = stage.embedder.embed_queries([query])[0]
    doc = {r.log_id: stage.embedder.embed_batch([r.text])[0] for r in results}
    first_q = staged.embedder.embed_queries([query])[0]
    rescored = [r for r in results if r.explanation["second_stage"]]
    assert len(rescored) == 3  # the depth
    for r in rescored:
        entry = r.explanation["second_stage"]
        assert (entry["model"], entry["weight"], entry["depth"]) == (MPNET, 0.6, 3)
        assert entry["cosine"] == pytest.approx(float(np.dot(q, doc[r.log_id])), abs=2e-2)
        # the first stage's similarity stays the first model's
        first_doc = staged.embedder.embed_batch([r.text])[0]
        assert r.similarity == pytest.approx(float(np.dot(first_q, first_doc)), abs=2e-2)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    fused = [r.explanation["second_stage"]["fused"] for r in rescored]
    assert fused == sorted(fused, reverse=True)
    assert rescored == results[:3]


def test_rows_embedded_before_the_setting_are_backfilled_and_never_mixed(store, staged):
    tenant, ids = _write_notes(staged)
    store.process_pending(tenant.user_id, tenant.project_id)  # no second stage configured
    assert not [key for key in _vectors(store, ids) if key[0] == MPNET]
    query = "why did the nightly import fail?"
    plain = store.search_similar_memories(query, tenant.user_id, tenant.project_id, 4)
    # top results without second-stage vectors keep the first stage's order, unscored by mpnet
    before = staged.search_similar_memories(
        query, tenant.user_id, tenant.project_id, 4, explain=True
    )
    assert [r.log_id for r in before] == [r.log_id for r in plain]
    assert all(r.explanation["second_stage"] is None for r in before)

    staged.process_pending(tenant.user_id, tenant.project_id)
    found = _vectors(staged, ids)
    assert {vid for (m, vid) in found if m == MPNET} == {str(i) for i in ids}
    after = staged.search_similar_memories(
        query, tenant.user_id, tenant.project_id, 4, explain=True
    )
    assert sum(1 for r in after if r.explanation["second_stage"]) == 3


def test_a_rollout_to_the_second_stages_model_serves_its_vectors_from_chroma(store, staged):
    """Rows that have mpnet vectors as their second stage are not re-embedded when mpnet becomes
    the tenant's model; Chroma's new collection must still hold them."""
    tenant, ids = _write_notes(staged)
    staged.process_pending(tenant.user_id, tenant.project_id)
    settings = store.settings.with_overrides(embedding_model=MPNET, rerank_model=None)
    with MemoryStore(
        settings, store.endpoints, embedder=staged.search.second_stage.embedder, migrate=False
    ) as only:
        only.process_pending(tenant.user_id, tenant.project_id)
        with only.db.connection() as conn:
            assert only_models(conn, tenant) == [MPNET]
        chroma_ids = only.vector_store.vector_ids(
            tenant, collection_name=only.vector_store.live_collection_name(tenant, MPNET)
        )
        assert chroma_ids == {str(i) for i in ids}
        for backend in ("chroma", "pgvector"):
            hits = only.search_similar_memories(
                "why did the nightly import fail?",
                tenant.user_id,
                tenant.project_id,
                4,
                backend=backend,
            )
            assert hits and hits[0].log_id == ids[0], backend
        assert _recorded(only, ids) == {
            (MPNET, content_hash(t, MPNET), 768) for t in _texts(only, ids)
        }

    # and back: the first model re-embeds every row (none is taken as unchanged) and switches
    counts = store.process_pending(tenant.user_id, tenant.project_id)
    assert (counts["reembedded"], counts["switched"]) == (len(ids), 1)
    first = store.embedder.model_id
    with store.db.connection() as conn:
        assert only_models(conn, tenant) == [first]
    assert _recorded(store, ids) == {
        (first, content_hash(t, first), 384) for t in _texts(store, ids)
    }


def _recorded(store: MemoryStore, ids: list[int]) -> set[tuple[str, str, int]]:
    """What memory_log says embedded each row: model, content hash, first-chunk dimensions."""
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT embedding_model, content_hash, vector_dims(embedding) AS dims FROM memory_log "
            "WHERE id = ANY(%s)",
            (ids,),
        ).fetchall()
    return {(r["embedding_model"], r["content_hash"], r["dims"]) for r in rows}


def _texts(store: MemoryStore, ids: list[int]) -> list[str]:
    with store.db.connection() as conn:
        rows = conn.execute("SELECT search_text FROM memory_log WHERE id = ANY(%s)", (ids,))
        return [r["search_text"] for r in rows.fetchall()]


def only_models(conn, tenant: Tenant) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT embedding_model FROM memory_vector WHERE tenant_key = %s", (tenant.key,)
    ).fetchall()
    return sorted(r["embedding_model"] for r in rows)


def test_the_evaluations_cached_second_stage_ranks_as_the_products_search(staged):
    """``make eval`` chooses the second stage's depth and weight on cached retrieval; its
    rankings must be the ones a search with that second stage returns."""
    from memory_pipeline.evaluation.stronger_model import Rescorable, Staged, rescorable
    from memory_pipeline.evaluation.tuning import retrieve_questions
    from memory_pipeline.search.searcher import DEFAULT_PARAMS, MemorySearch

    tenant = Tenant(f"stage-{uuid.uuid4().hex[:8]}", "p")
    notes = [*NOTES, *(f"Standup {i}: reviewed the {w} dashboard." for i, w in enumerate(WORDS))]
    for i, text in enumerate(notes):
        staged.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": text}, external_id=f"n{i}"
        )
    staged.process_pending(tenant.user_id, tenant.project_id)
    questions = [("why did the nightly import fail?", ("n0",)), ("which dashboard broke?", ())]
    cached = retrieve_questions(staged.search, staged, "t", tenant, questions, [DEFAULT_PARAMS])
    second = staged.search.second_stage
    scored: Rescorable = rescorable(staged.search, staged, cached, second, [DEFAULT_PARAMS])
    for depth, weight in ((0, 0.0), (3, 0.6), (10, 0.8)):
        stage = SecondStage(second.embedder, depth, weight) if depth else None
        search = MemorySearch(staged.db, staged.search.store, staged.embedder, second_stage=stage)
        expected = [
            [h.external_id for h in hits]
            for hits in search.search_many(
                [q for q, _ in questions], tenant.user_id, tenant.project_id, 10
            )
        ]
        got = scored.ranked(Staged(DEFAULT_PARAMS, depth, weight), datetime.now(UTC))
        assert got == expected, (depth, weight)


def test_seeded_memories_carry_second_stage_vectors_as_the_pipeline_writes_them(staged):
    """Bench B seeds its big tenant; with a second stage its memories need that model's vectors
    too, under the same vector ids, or the search it times would skip re-scoring."""
    from memory_pipeline.extraction import extract_memory
    from memory_pipeline.seeding import ReadyMemory, load_embedded_memories

    piped, seeded = (Tenant(f"{kind}-{uuid.uuid4().hex[:8]}", "p") for kind in ("piped", "seed"))
    piped_ids = [
        staged.create_memory_log(piped.user_id, piped.project_id, {"content": t}) for t in NOTES
    ]
    staged.process_pending(piped.user_id, piped.project_id)
    extracted = [extract_memory({"content": t}) for t in NOTES]
    second = staged.search.second_stage
    texts = [x.text for x in extracted]
    first = staged.embedder.model_id
    seeded_ids = load_embedded_memories(
        staged.db,
        staged.vector_store,
        first,
        seeded,
        [
            ReadyMemory.of(f"d{i}", {"content": t}, x, first)
            for i, (t, x) in enumerate(zip(NOTES, extracted, strict=True))
        ],
        staged.embedder.embed_batch(texts),
        second_stage=(second.model_id, second.embedder.embed_batch(texts)),
    )

    def models(ids: list[int]) -> list[tuple[str, int]]:
        found = _vectors(staged, ids)
        return sorted((m, dims) for (m, _), dims in found.items())

    assert models(seeded_ids) == models([getattr(i, "log_id", i) for i in piped_ids])
    hits = staged.search_similar_memories(
        "why did the nightly import fail?", seeded.user_id, seeded.project_id, 4, explain=True
    )
    assert sum(1 for h in hits if h.explanation["second_stage"]) == 3
