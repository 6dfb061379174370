"""No search, in any mode or backend, ever returns another tenant's memory (DESIGN §3)."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search import SEARCH_BACKENDS, SEARCH_MODES
from memory_pipeline.tenancy import Tenant

# Printable ids with ':' and '%' (the tenant-key encoding's special characters) and non-ASCII.
ID_ALPHABET = st.characters(
    blacklist_categories=("Cc", "Cs"), whitelist_characters=":%", min_codepoint=32
)
tenant_ids = st.text(ID_ALPHABET, min_size=1, max_size=12)

SHARED_TEXT = "The launch code for the rocket is hidden under the blue doormat."


def _owners(store: MemoryStore, log_ids: list[int]) -> set[tuple[str, str]]:
    with store.db.connection() as conn:
        rows = conn.execute(
            "SELECT DISTINCT user_id, project_id FROM memory_log WHERE id = ANY(%s)", (log_ids,)
        ).fetchall()
    return {(r["user_id"], r["project_id"]) for r in rows}


def _assert_only_own_memories(store: MemoryStore, tenant: Tenant, query: str) -> int:
    found = 0
    for mode in SEARCH_MODES:
        for backend in SEARCH_BACKENDS:
            (results,) = store.search_many(
                [query],
                tenant.user_id,
                tenant.project_id,
                limit=50,
                mode=mode,
                backend=backend,
                min_similarity=-1.0,
            )
            ids = [r.log_id for r in results]
            assert _owners(store, ids) <= {(tenant.user_id, tenant.project_id)}, (mode, backend)
            found += len(ids)
    return found


def _write_and_process(store: MemoryStore, tenants: list[Tenant]) -> None:
    for tenant in tenants:
        store.create_memory_log(
            tenant.user_id, tenant.project_id, {"content": SHARED_TEXT, "nonce": uuid.uuid4().hex}
        )
    for tenant in tenants:
        store.process_pending(tenant.user_id, tenant.project_id)


def test_tenants_whose_ids_differ_only_by_where_the_colon_is_stay_apart(
    any_home: MemoryStore,
) -> None:
    store = any_home
    nonce = uuid.uuid4().hex[:6]
    left, right = Tenant(f"a{nonce}:b", "c"), Tenant(f"a{nonce}", "b:c")
    assert left.key != right.key
    _write_and_process(store, [left, right])
    for tenant in (left, right):
        assert _assert_only_own_memories(store, tenant, SHARED_TEXT) > 0


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=st.tuples(tenant_ids, tenant_ids), second=st.tuples(tenant_ids, tenant_ids))
def test_search_never_returns_another_tenants_memory(
    any_home: MemoryStore, first: tuple[str, str], second: tuple[str, str]
) -> None:
    store = any_home  # per-tenant collections, then shard collections
    a, b = Tenant(*first), Tenant(*second)
    tenants = [a] if a == b else [a, b]
    _write_and_process(store, tenants)
    for tenant in tenants:
        assert _assert_only_own_memories(store, tenant, SHARED_TEXT) > 0
    # a third tenant nobody wrote to sees nothing at all
    stranger = Tenant(first[0] + "\u00e9", second[1] + ":x")
    if stranger not in tenants:
        for mode in SEARCH_MODES:
            results = store.search_similar_memories(
                SHARED_TEXT, stranger.user_id, stranger.project_id, mode=mode, min_similarity=-1
            )
            assert _owners(store, [r.log_id for r in results]) <= {
                (stranger.user_id, stranger.project_id)
            }
