"""Query cues (issue 18): a question about time, a question naming who speaks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.search.cues import MENTIONS_TIME_SQL, asks_about_time, named_speakers
from memory_pipeline.search.ranking import RankingParams, apply_cues
from memory_pipeline.storage import search_reads
from memory_pipeline.storage.search_reads import CandidateFacts
from memory_pipeline.tenancy import Tenant

NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "query",
    ["When did Ana move?", "what year was it", "How long has Ben lived there?", "which month"],
)
def test_questions_about_time_are_recognised(query: str) -> None:
    assert asks_about_time(query)


@pytest.mark.parametrize("query", ["What did Ana paint?", "Whenever is not a question word"])
def test_other_questions_are_not_about_time(query: str) -> None:
    assert not asks_about_time(query)


def test_a_speaker_is_named_by_the_first_word_of_their_name_in_any_case() -> None:
    speakers = {"Ana Lima", "Ben", "Cleo"}
    assert named_speakers("what did ana say about ben's bike?", speakers) == {"Ana Lima", "Ben"}
    assert named_speakers("Anatomy notes", speakers) == set()


def facts(speaker: str | None, mentions_time: bool) -> CandidateFacts:
    return CandidateFacts("conversation_turn", NOW, speaker, mentions_time)


def test_cues_multiply_only_the_memories_they_point_at() -> None:
    params = RankingParams(time_weight=0.5, speaker_weight=0.2)
    known = {1: facts("Ana", True), 2: facts("Ben", True), 3: facts("Ana", False)}
    scores, factors = apply_cues("When did Ana fly?", {1: 1.0, 2: 1.0, 3: 1.0}, known, params)
    assert scores == pytest.approx({1: 1.5 * 1.2, 2: 1.5, 3: 1.2})
    assert factors == {1: {"time": 1.5, "speaker": 1.2}, 2: {"time": 1.5}, 3: {"speaker": 1.2}}
    # a question that is not about time, naming everyone: nothing changes
    same, none = apply_cues("Did Ana meet Ben?", {1: 1.0, 2: 1.0}, known, params)
    assert same == {1: 1.0, 2: 1.0} and none == {}


def test_candidate_facts_read_the_turns_speaker_and_whether_it_mentions_a_time(
    store: MemoryStore,
) -> None:
    tenant = Tenant(f"cues-{uuid.uuid4().hex[:8]}", "talk")
    start = datetime(2023, 5, 8, 13, 0, tzinfo=UTC)
    said = [
        ("Ana Lima", "I flew to Lisbon yesterday."),
        ("Ben", "Nice! I stayed home."),
        ("Ben", "We met in March 2021, remember?"),
    ]
    ids = [
        store.create_memory_log(
            tenant.user_id,
            tenant.project_id,
            {"speaker": s, "text": t, "timestamp": (start + timedelta(minutes=n)).isoformat()},
        )
        for n, (s, t) in enumerate(said)
    ]
    note = store.create_memory_log(tenant.user_id, tenant.project_id, {"content": "A note."})
    store.process_pending(tenant.user_id, tenant.project_id)
    with store.db.connection() as conn:
        found = search_reads.candidate_facts(
            conn, tenant.key, [*ids, note], None, speakers=True, time_pattern=MENTIONS_TIME_SQL
        )
        plain = search_reads.candidate_facts(conn, tenant.key, ids, None)
        speakers_only = search_reads.candidate_facts(conn, tenant.key, ids, None, speakers=True)
    assert [found[i].speaker for i in ids] == ["Ana Lima", "Ben", "Ben"]
    # the day every turn's text starts with ("[8 May 2023]") is not a time it mentions
    assert [found[i].mentions_time for i in ids] == [True, False, True]
    assert found[note].speaker is None and not found[note].mentions_time
    assert all(f.speaker is None for f in plain.values())  # not read unless asked
    assert [speakers_only[i].speaker for i in ids] == ["Ana Lima", "Ben", "Ben"]
    assert not any(f.mentions_time for f in speakers_only.values())  # the regex only if asked
