"""Search never raises on a string a user can type (issue 15): a list, or a one-line ValueError.

The tenants are real (Postgres, Chroma, the keyword index) but loaded through the bulk path
with random vectors: what is tested is the query's path through search, not ranking quality.
"""

from __future__ import annotations

import random
import string
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_pipeline.keyword_index import EXACT_POSTINGS_BUDGET, refresh_keyword_index
from memory_pipeline.keyword_index.plan import CHAMPION_LIST_LENGTH, plan_candidates
from memory_pipeline.keyword_index.storage import query_terms, term_statistics
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.processing import content_hash
from memory_pipeline.search import SEARCH_BACKENDS, SEARCH_MODES, SearchResult
from memory_pipeline.search.request import MAX_QUERY_CHARS
from memory_pipeline.seeding import ReadyMemory, load_embedded_memories
from memory_pipeline.tenancy import Tenant

#: Pseudo-words the English stemmer keeps apart: consonant-vowel syllables.
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
ODD_WORDS = ["naïve", "東京", "Ωmega", "café", "🙂", "C++", "e-mail", "o'neil", "back\\slash"]


def pseudo_words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(3)))
    return sorted(words)


def load_tenant(store: MemoryStore, texts: list[str]) -> Tenant:
    """A new tenant holding ``texts`` as embedded notes (random vectors), keyword index built."""
    tenant = Tenant(f"queries-{uuid.uuid4().hex[:8]}", "typed")
    model = store.embedder.model_id
    start = datetime(2024, 1, 1, tzinfo=UTC)
    memories = [
        ReadyMemory(
            external_id=f"m{i}",
            raw_data={"content": text},
            search_text=text,
            memory_type="note",
            occurred_at=start + timedelta(hours=i),
            content_hash=content_hash(text, model),
        )
        for i, text in enumerate(texts)
    ]
    rng = np.random.default_rng(len(texts))
    vectors = rng.standard_normal((len(texts), store.embedder.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = load_embedded_memories(store.db, store.vector_store, model, tenant, memories, vectors)
    with store.db.connection() as conn:
        refresh_keyword_index(conn, {tenant.key: ids})
    return tenant


def zipf_texts(count: int, vocabulary: list[str], seed: int) -> list[str]:
    """Short notes whose words follow a Zipf law: a few common, many mid-frequency, some rare."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    return [
        " ".join(rng.choices(vocabulary, weights, k=rng.randint(4, 12)))
        + rng.choice([".", "!", "?", "", " — ok"])
        for _ in range(count)
    ]


VOCABULARY = pseudo_words(300, seed=1) + ODD_WORDS


@pytest.fixture(scope="module")
def small_tenant(store: MemoryStore) -> Tenant:
    return load_tenant(store, zipf_texts(300, VOCABULARY, seed=2))


@pytest.fixture(scope="module")
def large_tenant(store: MemoryStore) -> Tenant:
    return load_tenant(store, zipf_texts(3000, VOCABULARY, seed=3))


#: 1,200 memories, 40 words each held by exactly 240 (under a champion list's length).
MID_WORDS = pseudo_words(40, seed=4)


@pytest.fixture(scope="module")
def mid_frequency_tenant(store: MemoryStore) -> Tenant:
    texts = [" ".join(MID_WORDS[(i * 8 + j) % 40] for j in range(8)) for i in range(1200)]
    return load_tenant(store, texts)


def recount(store: MemoryStore, tenant: Tenant) -> tuple[int, int, dict[str, int]]:
    """(memories, total length, df per term) counted from scratch over embedded rows."""
    with store.db.connection() as conn:
        totals = conn.execute(
            "SELECT count(*) AS docs, coalesce(sum(length(search_tsv)), 0) AS length "
            "FROM memory_log WHERE tenant_key = %s AND status = 'embedded'",
            (tenant.key,),
        ).fetchone()
        rows = conn.execute(
            "SELECT t AS term, count(*) AS docs FROM memory_log m, "
            "unnest(tsvector_to_array(m.search_tsv)) AS t "
            "WHERE m.tenant_key = %s AND m.status = 'embedded' GROUP BY t",
            (tenant.key,),
        ).fetchall()
    return int(totals["docs"]), int(totals["length"]), {r["term"]: int(r["docs"]) for r in rows}


def assert_list_or_one_line_error(
    store: MemoryStore, tenant: Tenant, query: str, mode: str, backend: str
) -> None:
    try:
        found = store.search_similar_memories(
            query, tenant.user_id, tenant.project_id, mode=mode, backend=backend
        )
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
    else:
        assert isinstance(found, list)
        assert all(isinstance(r, SearchResult) for r in found)


def test_many_mid_frequency_query_words_are_searched_in_every_mode_and_backend(
    store: MemoryStore, mid_frequency_tenant: Tenant
) -> None:
    """No query term is common, yet together they are past the exact budget (was a
    ZeroDivisionError in plan_candidates)."""
    tenant = mid_frequency_tenant
    query = " ".join(MID_WORDS[:12])
    with store.db.connection() as conn:
        stats = term_statistics(conn, tenant.key, query_terms(conn, query))
    assert all(0 < df <= CHAMPION_LIST_LENGTH for df in stats.doc_freq.values())
    assert sum(stats.doc_freq.values()) > EXACT_POSTINGS_BUDGET
    for mode in ("hybrid", "keyword"):
        for backend in SEARCH_BACKENDS:
            found = store.search_similar_memories(
                query, tenant.user_id, tenant.project_id, limit=10, mode=mode, backend=backend
            )
            assert len(found) == 10


def test_a_plan_with_no_common_term_looks_every_term_up_in_full() -> None:
    doc_freq = {f"w{i}": 240 for i in range(12)}
    plan = plan_candidates(doc_freq, exact_budget=2000, list_length=256)
    assert plan.full_terms == tuple(sorted(doc_freq)) and plan.champion_terms == ()


@pytest.mark.parametrize("which", ["mid_frequency_tenant", "large_tenant"])
def test_the_keyword_index_statistics_match_a_recount(
    store: MemoryStore, which: str, request: pytest.FixtureRequest
) -> None:
    tenant: Tenant = request.getfixturevalue(which)
    docs, length, df = recount(store, tenant)
    with store.db.connection() as conn:
        stats = term_statistics(conn, tenant.key, sorted(df))
    assert (stats.docs, stats.total_length) == (docs, length)
    assert dict(stats.doc_freq) == df


def test_a_nul_or_a_lone_surrogate_in_a_query_is_removed(
    store: MemoryStore, small_tenant: Tenant
) -> None:
    word = VOCABULARY[0]
    plain = store.search_similar_memories(word, small_tenant.user_id, small_tenant.project_id)
    for odd in (f"{word}\x00", f"\x00{word}\ud800", f"{word}\udfff\x00\x00"):
        found = store.search_similar_memories(odd, small_tenant.user_id, small_tenant.project_id)
        assert [r.log_id for r in found] == [r.log_id for r in plain]


@pytest.mark.parametrize("query", ["\x00", "\x00 \ud800", "x" * (MAX_QUERY_CHARS + 1)])
def test_a_query_with_nothing_usable_or_too_long_is_a_one_line_value_error(
    store: MemoryStore, small_tenant: Tenant, query: str
) -> None:
    with pytest.raises(ValueError) as raised:
        store.search_similar_memories(query, small_tenant.user_id, small_tenant.project_id)
    assert "\n" not in str(raised.value)


_vocabulary_queries = st.lists(st.sampled_from(VOCABULARY + MID_WORDS), min_size=1, max_size=60)
typed_queries = st.one_of(
    st.text(min_size=1, max_size=200),  # any unicode
    st.text(st.characters(exclude_categories=()), min_size=1, max_size=80),  # surrogates too
    st.text(string.punctuation + " ", min_size=1, max_size=50),  # punctuation only
    _vocabulary_queries.map(" ".join),
    st.builds(  # long and repetitive, up to past the length limit
        lambda word, n: " ".join([word] * n),
        st.sampled_from(VOCABULARY + ["the", "a", "x"]),
        st.integers(1, 3000),
    ),
    st.builds(  # NUL and other control characters among real words
        lambda words, junk: junk.join(words),
        _vocabulary_queries,
        st.sampled_from(["\x00", "\x00\x01", "\t\n", "\u200b", "\ufeff", "\\", "'", ":*"]),
    ),
    st.builds(lambda s: s * 2000, st.text(min_size=1, max_size=8)),  # huge
)


# Each example searches in one mode and backend (drawn): every pair is covered over the run.
search_settings = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@search_settings
@given(
    query=typed_queries,
    mode=st.sampled_from(SEARCH_MODES),
    backend=st.sampled_from(SEARCH_BACKENDS),
)
def test_any_typed_query_gives_a_list_or_a_one_line_value_error_on_a_small_tenant(
    store: MemoryStore, small_tenant: Tenant, query: str, mode: str, backend: str
) -> None:
    assert_list_or_one_line_error(store, small_tenant, query, mode, backend)


@search_settings
@given(
    query=typed_queries,
    mode=st.sampled_from(SEARCH_MODES),
    backend=st.sampled_from(SEARCH_BACKENDS),
)
def test_any_typed_query_gives_a_list_or_a_one_line_value_error_on_large_tenants(
    store: MemoryStore,
    large_tenant: Tenant,
    mid_frequency_tenant: Tenant,
    query: str,
    mode: str,
    backend: str,
) -> None:
    assert_list_or_one_line_error(store, large_tenant, query, mode, backend)
    assert_list_or_one_line_error(store, mid_frequency_tenant, query, mode, backend)
