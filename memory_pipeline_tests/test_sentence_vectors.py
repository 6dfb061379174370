"""Sentence vectors (docs/decisions/0205): a short multi-sentence memory is embedded whole and
sentence by sentence, under a model id of its own, and its vectors live and leave with the row
in both stores like any chunk's."""

import pytest

from memory_pipeline.consistency import compare_vectors
from memory_pipeline.embedding import Embedder
from memory_pipeline.embedding.backends import model_id_for, split_model_id
from memory_pipeline.embedding.sentences import (
    MAX_SENTENCES,
    SENTENCE_VECTORS_SUFFIX,
    split_sentences,
    with_sentence_chunks,
)
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.settings import Settings
from memory_pipeline.storage import live_models

TURN = (
    "Caroline: I adopted a beagle puppy last week. "
    "My sister is moving to Lisbon in June! "
    "Did you finish the pottery class?"
)
SENTENCES = [
    "Caroline: I adopted a beagle puppy last week.",
    "My sister is moving to Lisbon in June!",
    "Did you finish the pottery class?",
]


def test_sentences_are_split_after_their_punctuation_and_keep_it():
    assert split_sentences(TURN) == SENTENCES
    assert split_sentences('He said "stop." Then (quietly.) left') == [
        'He said "stop."',
        "Then (quietly.)",
        "left",
    ]
    assert split_sentences("version 1.2 shipped") == ["version 1.2 shipped"]
    assert split_sentences("  ") == []


def test_only_one_chunk_texts_of_several_sentences_get_sentence_chunks():
    assert with_sentence_chunks([TURN]) == [TURN, *SENTENCES]
    assert with_sentence_chunks(["One fact only."]) == ["One fact only."]
    many = " ".join(f"Fact {i}." for i in range(MAX_SENTENCES + 1))
    assert with_sentence_chunks([many]) == [many]  # a document, not a turn
    assert with_sentence_chunks(["a. b.", "c. d."]) == ["a. b.", "c. d."]  # window chunks


def test_sentence_vectors_are_part_of_the_model_id():
    for backend in ("torch", "onnx-int8"):
        plain = model_id_for("m/x", backend)
        model_id = model_id_for("m/x", backend, sentence_vectors=True)
        assert model_id == plain + SENTENCE_VECTORS_SUFFIX
        assert split_model_id(model_id) == ("m/x", backend, True)
        assert split_model_id(plain) == ("m/x", backend, False)


def test_the_setting_reads_its_environment_variable(monkeypatch):
    monkeypatch.setenv("MEMORY_PIPELINE_SENTENCE_VECTORS", "true")
    assert Settings.from_env().sentence_vectors is True
    monkeypatch.delenv("MEMORY_PIPELINE_SENTENCE_VECTORS")
    assert Settings.from_env().sentence_vectors is False


@pytest.fixture(scope="module")
def sentence_store(store, embedder):
    """The session's home with an embedder that writes sentence vectors (same weights)."""
    sentences = Embedder(
        embedder.model_name, model_source=embedder.model_source, sentence_vectors=True
    )
    sentences._model = embedder.model  # no second load
    with MemoryStore(store.settings, store.endpoints, embedder=sentences, migrate=False) as s:
        s.ensure_model_index()
        yield s


def _vectors(store, log_id):
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT embedding_model, chunk_index, chunk_text FROM memory_vector "
            "WHERE log_id = %s ORDER BY embedding_model, chunk_index",
            (log_id,),
        ).fetchall()
    return [(r["embedding_model"], r["chunk_index"], r["chunk_text"]) for r in rows]


def _chroma_ids(store, tenant):
    return store.vector_store.vector_ids(
        tenant,
        collection_name=store.vector_store.live_collection_name(tenant, store.embedder.model_id),
    )


def test_a_memory_gets_a_vector_per_sentence_that_search_matches_and_that_leave_with_it(
    sentence_store, new_tenant
):
    s, tenant = sentence_store, new_tenant("sentences")
    model_id = s.embedder.model_id
    assert model_id.endswith(SENTENCE_VECTORS_SUFFIX)
    log_id = s.create_memory_log(tenant.user_id, tenant.project_id, {"content": TURN})
    other = s.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "Melanie painted a sunset by the lake."}
    )
    s.process_pending(tenant.user_id, tenant.project_id)

    assert _vectors(s, log_id) == [(model_id, i, t) for i, t in enumerate([TURN, *SENTENCES])]
    assert _vectors(s, other) == [(model_id, 0, "Melanie painted a sunset by the lake.")]
    assert s.get_memory_log(log_id)["chunk_count"] == 4
    assert _chroma_ids(s, tenant) == {
        str(log_id),
        *(f"{log_id}#{i}" for i in (1, 2, 3)),
        str(other),
    }
    assert compare_vectors(s.db, s.vector_store, tenant, model_id).in_sync

    # A question about one sentence is matched by that sentence's vector, on every backend.
    for backend in ("auto", "chroma", "pgvector"):
        hits = s.search_similar_memories(
            "where is her sister moving",
            tenant.user_id,
            tenant.project_id,
            mode="vector",
            backend=backend,
            explain=True,
        )
        assert hits[0].log_id == log_id
        matched = hits[0].explanation["matched_chunk"]
        assert (matched["index"], matched["text"]) == (2, SENTENCES[1])

    # An update re-embeds the row's sentences; none of the old ones is left behind.
    s.update_memory_log(
        log_id, {"content": "Caroline: The puppy is named Max. He loves the beach."}
    )
    s.process_pending(tenant.user_id, tenant.project_id)
    assert [t for _, _, t in _vectors(s, log_id)] == [
        "Caroline: The puppy is named Max. He loves the beach.",
        "Caroline: The puppy is named Max.",
        "He loves the beach.",
    ]
    assert _chroma_ids(s, tenant) == {str(log_id), f"{log_id}#1", f"{log_id}#2", str(other)}
    assert compare_vectors(s.db, s.vector_store, tenant, model_id).in_sync

    # A delete takes every sentence vector with the row, in both stores.
    assert s.delete_memory_log(log_id)
    s.process_pending(tenant.user_id, tenant.project_id)
    assert _vectors(s, log_id) == []
    assert _chroma_ids(s, tenant) == {str(other)}
    assert compare_vectors(s.db, s.vector_store, tenant, model_id).in_sync


def test_turning_sentence_vectors_on_re_embeds_a_tenant_aside_like_a_model_change(
    store, sentence_store, new_tenant
):
    tenant = new_tenant("sentences-rollout")
    ids = [
        store.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": f"Note {i}. It is about sailing."}
        )
        for i in range(4)
    ]
    store.process_pending(tenant.user_id, tenant.project_id)
    plain, with_sentences = store.embedder.model_id, sentence_store.embedder.model_id
    with store.db.connection() as conn:
        assert live_models.live_model_of(conn, tenant.key) == plain

    sentence_store.process_pending(tenant.user_id, tenant.project_id)
    with store.db.connection() as conn:
        assert live_models.live_model_of(conn, tenant.key) == with_sentences
        models = conn.execute(
            "SELECT embedding_model, count(*) AS n FROM memory_vector WHERE tenant_key = %s "
            "GROUP BY 1",
            (tenant.key,),
        ).fetchall()
    assert {r["embedding_model"]: r["n"] for r in models} == {with_sentences: 12}
    live = store.vector_store.existing_collection(tenant)
    assert live.metadata["embedding_model"] == with_sentences and live.count() == 12
    # A process still configured without sentence vectors searches the tenant's live model.
    hits = store.search_similar_memories("note 2", tenant.user_id, tenant.project_id, mode="vector")
    assert {h.log_id for h in hits} == set(ids)
