"""Sitting expansion (issue 18): the turns of the best turn's sitting gain from it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search.ranking import (
    CONTEXT_MEMORY_TYPE,
    ContextBonus,
    expand_sittings,
    sitting_seeds,
)
from memory_pipeline.storage import search_reads
from memory_pipeline.storage.search_reads import CandidateFacts
from memory_pipeline.tenancy import Tenant

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def turn() -> CandidateFacts:
    return CandidateFacts(CONTEXT_MEMORY_TYPE, NOW, "Ana")


def test_the_best_turns_sitting_gains_a_share_of_its_score() -> None:
    known = {1: turn(), 2: turn(), 3: turn(), 4: turn(), 9: CandidateFacts("note", NOW)}
    scores = {9: 2.0, 1: 1.0, 2: 0.4}  # a note scores best, but only a turn has a sitting
    assert sitting_seeds(scores, known) == [1]
    merged, bonus = expand_sittings(scores, {1: [2, 3, 5], 2: [4]}, known, 0.1)
    # 3 joins with the bonus alone; 5 is not visible; 2's own sitting is not expanded
    assert merged == pytest.approx({9: 2.0, 1: 1.0, 2: 0.5, 3: 0.1})
    assert bonus == {2: ContextBonus(1, pytest.approx(0.1)), 3: ContextBonus(1, pytest.approx(0.1))}


def test_a_sitting_is_the_turns_written_within_the_gap_of_a_turn(store: MemoryStore) -> None:
    tenant = Tenant(f"sitting-{uuid.uuid4().hex[:8]}", "talk")
    start = datetime(2023, 5, 8, 13, 0, tzinfo=UTC)
    sittings = [start, start + timedelta(days=2)]
    for day, when in enumerate(sittings):
        for n in range(4):
            store.create_memory_log(
                tenant.user_id,
                tenant.project_id,
                {
                    "speaker": "Ana" if n % 2 else "Ben",
                    "text": f"sitting {day} line {n}",
                    "timestamp": (when + timedelta(minutes=n)).isoformat(),
                },
                external_id=f"s{day}-{n}",
            )
    store.process_pending(tenant.user_id, tenant.project_id)
    with store.db.connection() as conn:
        ids = {
            r["external_id"]: int(r["id"])
            for r in conn.execute(
                "SELECT id, external_id FROM memory_log WHERE tenant_key = %s", (tenant.key,)
            ).fetchall()
        }
        around = search_reads.adjacent_memories(
            conn, tenant.key, [ids["s0-1"]], CONTEXT_MEMORY_TYPE, 3600.0, reach=32
        )
        nearest = search_reads.adjacent_memories(
            conn, tenant.key, [ids["s0-1"]], CONTEXT_MEMORY_TYPE, 3600.0
        )
    assert sorted(around[ids["s0-1"]]) == sorted(ids[f"s0-{n}"] for n in (0, 2, 3))
    assert sorted(nearest[ids["s0-1"]]) == sorted(ids[f"s0-{n}"] for n in (0, 2))
