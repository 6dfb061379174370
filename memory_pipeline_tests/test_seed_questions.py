"""The seed work logs stay findable: hit@1 on sixteen questions asked of them (issue 18)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memory_pipeline.evaluation.seed_questions import SEED_QUESTIONS, hits_at_1, import_work_logs
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.tenancy import Tenant
from memory_pipeline_tests.conftest import SHARED_DATA

WORK_LOGS = SHARED_DATA / "seed-memories" / "work_logs"
MIN_HITS = 14


@pytest.mark.skipif(not WORK_LOGS.is_dir(), reason="seed memories not present")
def test_default_search_puts_the_answering_work_log_first_for_most_questions(
    store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant("seed")
    assert import_work_logs(store, tenant.user_id, tenant.project_id, WORK_LOGS) == 17
    hits = hits_at_1(store, tenant.user_id, tenant.project_id)
    missed = [q.question for q, hit in zip(SEED_QUESTIONS, hits, strict=True) if not hit]
    assert sum(hits) >= MIN_HITS, missed
