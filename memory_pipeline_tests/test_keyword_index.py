"""The keyword index on the real Postgres: exact term statistics, champion lists, keyword plans."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from memory_pipeline.keyword_index import compact_term_stats, keyword_candidates
from memory_pipeline.keyword_index.bm25 import idf, term_weight
from memory_pipeline.keyword_index.plan import (
    CHAMPION_LIST_LENGTH,
    MIN_CHAMPION_DEPTH,
    CandidatePlan,
    plan_candidates,
)
from memory_pipeline.keyword_index.storage import (
    build_champions,
    champion_rebuilds_due,
    merge_into_champions,
    query_terms,
    score_candidates,
    term_statistics,
)
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search.filters import where_to_sql
from memory_pipeline.search.searcher import HYBRID_CHAMPION_BUDGET, MemorySearch
from memory_pipeline.tenancy import Tenant

LIGHTHOUSE_NOTES = [
    "The lighthouse keeper logged the storm at dawn.",
    "Lighthouse lighthouse lighthouse: the lamp was replaced twice.",
    "A long walk along the cliffs, past the harbour, the church, the school and finally "
    "the old lighthouse, where we ate sandwiches and watched the ferries come and go.",
    "Painted the lighthouse door red.",
    "The lighthouse lamp uses a Fresnel lens.",
    "Ferries were cancelled; the lighthouse foghorn ran all night.",
    "Bought bread, cheese and apples at the market near the lighthouse.",
    "The lighthouse museum opens at nine.",
    "Lighthouse tours are free on Sundays, lighthouse staff said.",
    "Sketched seagulls on the harbour wall.",
    "Read a novel about a lighthouse on a remote island with a lighthouse keeper.",
    "Fixed the bicycle chain.",
]


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


def kept_statistics(store: MemoryStore, tenant: Tenant) -> tuple[int, int, dict[str, int]]:
    """The same figures as the keyword index keeps them (statistics plus pending deltas)."""
    with store.db.connection() as conn:
        terms = [
            r["term"]
            for r in conn.execute(
                "SELECT term FROM memory_term_stats WHERE tenant_key = %(t)s AND term <> '' "
                "UNION SELECT term FROM memory_term_stats_delta "
                "WHERE tenant_key = %(t)s AND term <> ''",
                {"t": tenant.key},
            ).fetchall()
        ]
        stats = term_statistics(conn, tenant.key, terms)
    return stats.docs, stats.total_length, {t: df for t, df in stats.doc_freq.items() if df}


def pending_deltas(store: MemoryStore, tenant: Tenant) -> int:
    with store.db.connection() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM memory_term_stats_delta WHERE tenant_key = %s",
            (tenant.key,),
        ).fetchone()
    return int(row["n"])


def write_notes(store: MemoryStore, tenant: Tenant, notes: list[str]) -> list[int]:
    ids = [
        store.create_memory_log(tenant.user_id, tenant.project_id, {"content": n}) for n in notes
    ]
    store.process_pending(tenant.user_id, tenant.project_id)
    return ids


def lighthouse_tenant_with_lists(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> tuple[Tenant, list[int]]:
    """A new tenant holding LIGHTHOUSE_NOTES, with champion lists of length 4 built."""
    tenant = new_tenant()
    ids = write_notes(store, tenant, LIGHTHOUSE_NOTES)
    with store.db.connection() as conn:
        build_champions(conn, tenant.key, list_length=4)
    return tenant, ids


def brute_force_bm25(store: MemoryStore, tenant: Tenant, query: str) -> dict[int, float]:
    """BM25 of every memory of the tenant for ``query``, from a full scan (the reference)."""
    docs, length, df = recount(store, tenant)
    with store.db.connection() as conn:
        terms = query_terms(conn, query)
        rows = conn.execute(
            "SELECT m.id, length(m.search_tsv) AS len, t.lexeme, "
            "array_length(t.positions, 1) AS tf FROM memory_log m, unnest(m.search_tsv) AS t "
            "WHERE m.tenant_key = %s AND m.status = 'embedded' AND t.lexeme = ANY(%s)",
            (tenant.key, terms),
        ).fetchall()
    scores: Counter[int] = Counter()
    for r in rows:
        scores[r["id"]] += idf(df[r["lexeme"]], docs) * term_weight(
            r["tf"], r["len"], length / docs
        )
    return dict(scores)


def test_term_statistics_stay_exact_through_embeds_updates_skips_and_deletes(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    ids = write_notes(store, tenant, LIGHTHOUSE_NOTES[:6])
    assert kept_statistics(store, tenant) == recount(store, tenant)
    assert recount(store, tenant)[0] == 6

    store.update_memory_log(ids[0], {"content": "Completely different words about kayaks."})
    assert kept_statistics(store, tenant) == recount(store, tenant)  # pending now: not counted
    with store.db.connection() as conn:  # a writer outside the Python API
        conn.execute(
            """UPDATE memory_log SET raw_data = '{"content": "kayaks and canoes"}' WHERE id = %s""",
            (ids[1],),
        )
    store.delete_memory_log(ids[2])
    store.update_memory_log(ids[3], {"nothing": None})  # will be skipped: no text
    assert kept_statistics(store, tenant) == recount(store, tenant)

    store.process_pending(tenant.user_id, tenant.project_id)
    assert store.get_memory_log(ids[3])["status"] == "skipped"
    assert kept_statistics(store, tenant) == recount(store, tenant)
    docs, _, df = recount(store, tenant)
    assert docs == 4 and df["kayak"] == 2
    assert pending_deltas(store, tenant) == 0  # the run folded its deltas in


def test_concurrent_compactions_count_every_delta_exactly_once(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    ids = write_notes(store, tenant, LIGHTHOUSE_NOTES)
    with store.db.connection() as conn:  # leave deltas behind: rows back to pending
        conn.execute("UPDATE memory_log SET status = 'pending' WHERE id = ANY(%s)", (ids[:5],))
    assert pending_deltas(store, tenant) > 0
    expected = recount(store, tenant)

    errors: list[BaseException] = []

    def compact() -> None:
        try:
            with store.db.connection() as conn:
                compact_term_stats(conn, [tenant.key])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=compact) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pending_deltas(store, tenant) == 0
    assert kept_statistics(store, tenant) == expected


def test_champion_lists_hold_the_memories_where_a_common_term_weighs_most(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    write_notes(store, tenant, LIGHTHOUSE_NOTES)
    with store.db.connection() as conn:
        assert build_champions(conn, tenant.key, list_length=4) > 0
        champions = {
            r["term"]: r["log_ids"]
            for r in conn.execute(
                "SELECT term, log_ids FROM memory_term_champion WHERE tenant_key = %s",
                (tenant.key,),
            ).fetchall()
        }
        postings = conn.execute(
            "SELECT m.id, length(m.search_tsv) AS len, array_length(t.positions, 1) AS tf "
            "FROM memory_log m, unnest(m.search_tsv) AS t "
            "WHERE m.tenant_key = %s AND m.status = 'embedded' AND t.lexeme = 'lighthous'",
            (tenant.key,),
        ).fetchall()
    docs, length, df = recount(store, tenant)
    assert set(champions) == {term for term, n in df.items() if n > 4}
    ranked = sorted(
        postings, key=lambda r: (-term_weight(r["tf"], r["len"], length / docs), r["id"])
    )
    assert champions["lighthous"] == [r["id"] for r in ranked[:4]]


def champion_lists(store: MemoryStore, tenant: Tenant) -> dict[str, list[int]]:
    with store.db.connection() as conn:
        return {
            r["term"]: r["log_ids"]
            for r in conn.execute(
                "SELECT term, log_ids FROM memory_term_champion WHERE tenant_key = %s",
                (tenant.key,),
            ).fetchall()
        }


def best_by_weight(store: MemoryStore, tenant: Tenant, term: str, length: int) -> list[int]:
    """The ``length`` memories where ``term`` weighs most now, from a full scan."""
    docs, total, _ = recount(store, tenant)
    with store.db.connection() as conn:
        postings = conn.execute(
            "SELECT m.id, length(m.search_tsv) AS len, array_length(t.positions, 1) AS tf "
            "FROM memory_log m, unnest(m.search_tsv) AS t "
            "WHERE m.tenant_key = %s AND m.status = 'embedded' AND t.lexeme = %s",
            (tenant.key, term),
        ).fetchall()
    ranked = sorted(
        postings, key=lambda r: (-term_weight(r["tf"], r["len"], total / docs), r["id"])
    )
    return [r["id"] for r in ranked[:length]]


def test_champion_lists_are_rebuilt_once_enough_memories_left(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    ids = write_notes(store, tenant, LIGHTHOUSE_NOTES)
    due = lambda: champion_rebuilds_due(  # noqa: E731
        conn, [tenant.key], list_length=4, rebuild_fraction=0.1
    )
    with store.db.connection() as conn:
        assert due() == [tenant.key]  # never built
        build_champions(conn, tenant.key, list_length=4)
        assert due() == []
        assert champion_rebuilds_due(conn, [tenant.key], list_length=5) == [tenant.key]
        # a tenant no bigger than a list has no common term: nothing to build
        assert champion_rebuilds_due(conn, [tenant.key], list_length=12) == []
    write_notes(store, tenant, [f"Lighthouse note {i}." for i in range(5)])  # merged, not rebuilt
    with store.db.connection() as conn:
        assert due() == []
    store.delete_memory_log(ids[0])
    store.process_pending(tenant.user_id, tenant.project_id)  # 1 left of 16: under 10 %
    with store.db.connection() as conn:
        assert due() == []
    store.update_memory_log(ids[1], {"content": "New words, so it leaves and comes back."})
    store.process_pending(tenant.user_id, tenant.project_id)  # 2 of 16 left: over 10 %
    with store.db.connection() as conn:
        assert due() == [tenant.key]
        build_champions(conn, tenant.key, list_length=4)
        assert due() == []


def test_a_merge_puts_a_new_memory_where_it_beats_the_list(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant, _ = lighthouse_tenant_with_lists(store, new_tenant)
    before = champion_lists(store, tenant)
    strong, weak = write_notes(
        store,
        tenant,
        [
            # the term four times in the shortest memory: it weighs most here
            "Lighthouse, lighthouse, lighthouse, lighthouse.",
            "Notes from a very long day: breakfast, emails, a meeting about budgets, a walk "
            "to the station, a train, another meeting, lunch, and a mention of a lighthouse.",
        ],
    )
    with store.db.connection() as conn:
        assert merge_into_champions(conn, tenant.key, [strong, weak], list_length=4) >= 1
    after = champion_lists(store, tenant)
    assert after["lighthous"][0] == strong
    assert weak not in after["lighthous"]
    assert after["lighthous"] == best_by_weight(store, tenant, "lighthous", 4)
    assert all(len(ids) <= 4 for ids in after.values())
    assert set(after) == set(before)  # no other term became common

    # re-embedded with new text, the memory is taken in again, once
    store.update_memory_log(strong, {"content": "Lighthouse lighthouse lighthouse, lighthouse!"})
    store.process_pending(tenant.user_id, tenant.project_id)
    with store.db.connection() as conn:
        merge_into_champions(conn, tenant.key, [strong], list_length=4)
    assert champion_lists(store, tenant)["lighthous"].count(strong) == 1


def test_a_term_that_becomes_common_gets_its_list_at_the_next_merge(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant, _ = lighthouse_tenant_with_lists(store, new_tenant)  # "ferri" is held by 2 memories
    assert "ferri" not in champion_lists(store, tenant)
    new = write_notes(
        store, tenant, ["Ferry timetable changed.", "Missed the ferry again.", "Ferry."]
    )
    with store.db.connection() as conn:
        merge_into_champions(conn, tenant.key, new, list_length=4)
    assert champion_lists(store, tenant)["ferri"] == best_by_weight(store, tenant, "ferri", 4)


def test_the_pipeline_keeps_champion_lists_current(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    notes = [
        f"Harbour log {i}: boats counted, weather {('calm', 'rough')[i % 2]}, all well "
        f"with the moorings and the night watch on shift {i}."
        for i in range(CHAMPION_LIST_LENGTH + 6)
    ]
    write_notes(store, tenant, notes)  # over a list's length: the run built the lists
    lists = champion_lists(store, tenant)
    assert len(lists["harbour"]) == CHAMPION_LIST_LENGTH
    (short,) = write_notes(store, tenant, ["Harbour."])  # the run merged it in
    assert champion_lists(store, tenant)["harbour"][0] == short
    with store.db.connection() as conn:
        assert champion_rebuilds_due(conn, [tenant.key]) == []


def test_keyword_mode_reads_champion_lists_deeper_than_hybrid_mode(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    notes = [f"Harbour log {i}: {'calm ' * (i % 5)}night watch." for i in range(300)]
    write_notes(store, tenant, notes)  # "harbour" is common: its list holds the best 256
    approximate = MemorySearch(
        store.db, store.search.store, store.embedder, keyword_exact_budget=0
    )  # every plan reads champion lists, as on a large tenant
    found = approximate.search_similar_memories(
        "harbour", tenant.user_id, tenant.project_id, limit=300, mode="keyword"
    )
    assert len(found) == CHAMPION_LIST_LENGTH  # the whole list, not its first 64
    with store.db.connection() as conn:
        hybrid_side = keyword_candidates(
            conn, tenant.key, "harbour", 300, exact_budget=0, champion_budget=HYBRID_CHAMPION_BUDGET
        )
    assert len(hybrid_side) == MIN_CHAMPION_DEPTH


def test_keyword_search_of_a_small_tenant_is_exact_bm25(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    write_notes(store, tenant, LIGHTHOUSE_NOTES)
    query = "lighthouse keeper ferries"
    reference = brute_force_bm25(store, tenant, query)
    with store.db.connection() as conn:
        found = keyword_candidates(conn, tenant.key, query, n=len(LIGHTHOUSE_NOTES))
    assert found == pytest.approx(reference)
    assert found.keys() == reference.keys() and len(found) >= 9


def test_a_champion_plan_scores_champions_and_rare_term_memories_over_every_query_term(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant, ids = lighthouse_tenant_with_lists(store, new_tenant)
    # arrives after the lists were built, and is the only memory with its code word
    (late,) = write_notes(store, tenant, ["Lighthouse inspection code zanzibar7731 filed."])
    query = "lighthouse zanzibar7731"
    reference = brute_force_bm25(store, tenant, query)
    with store.db.connection() as conn:
        terms = query_terms(conn, query)
        stats = term_statistics(conn, tenant.key, terms)
        plan = plan_candidates(stats.doc_freq, exact_budget=0, list_length=4)
        assert plan.full_terms == ("zanzibar7731",) and plan.champion_terms == ("lighthous",)
        (champions,) = (
            conn.execute(
                "SELECT log_ids FROM memory_term_champion WHERE tenant_key = %s "
                "AND term = 'lighthous'",
                (tenant.key,),
            )
            .fetchone()
            .values()
        )
        scores = score_candidates(conn, tenant.key, terms, plan, stats, None, n=100)
        top = score_candidates(conn, tenant.key, terms, plan, stats, None, n=2)
        also = score_candidates(conn, tenant.key, terms, plan, stats, None, n=1, also=[ids[11]])
    assert scores.keys() == {*champions, late}
    assert scores == pytest.approx({i: reference[i] for i in scores})
    assert max(scores, key=scores.__getitem__) == late
    assert top.keys() == set(sorted(scores, key=lambda i: (-scores[i], i))[:2])
    # a memory asked for is scored too (but not when it holds no query term)
    assert also.keys() == {late}


def test_a_champion_plan_reads_only_the_head_of_each_list(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant, _ = lighthouse_tenant_with_lists(store, new_tenant)
    champions = champion_lists(store, tenant)["lighthous"]  # 4 long
    with store.db.connection() as conn:
        terms = query_terms(conn, "lighthouse")
        stats = term_statistics(conn, tenant.key, terms)
        head = CandidatePlan((), ("lighthous",), champion_depth=2)
        scores = score_candidates(conn, tenant.key, terms, head, stats, None, n=100)
    assert scores.keys() == set(champions[:2])


def test_keyword_candidates_respect_the_filter_but_not_in_their_statistics(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant()
    ids = write_notes(store, tenant, LIGHTHOUSE_NOTES)
    reference = brute_force_bm25(store, tenant, "lighthouse")
    allowed = ids[:3]
    with store.db.connection() as conn:
        found = keyword_candidates(
            conn, tenant.key, "lighthouse", n=20, where=where_to_sql({"log_id": {"$in": allowed}})
        )
    assert found.keys() == set(allowed) & reference.keys()
    assert found == pytest.approx({i: reference[i] for i in found})


def test_purge_forgets_the_tenants_keyword_index(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant, _ = lighthouse_tenant_with_lists(store, new_tenant)
    store.purge_tenant(tenant.user_id, tenant.project_id)
    with store.db.connection() as conn:
        for table in (
            "memory_term_stats",
            "memory_term_stats_delta",
            "memory_term_champion",
            "memory_term_champion_build",
        ):
            row = conn.execute(
                f"SELECT count(*) AS n FROM {table} WHERE tenant_key = %s", (tenant.key,)
            ).fetchone()
            assert row["n"] == 0, table
