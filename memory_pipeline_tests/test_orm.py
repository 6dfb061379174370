"""The SQLAlchemy mapping: applications write memories in their own session; the pipeline embeds them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.storage.orm import MemoryLog, MemoryTenant, sqlalchemy_url
from memory_pipeline.tenancy import Tenant


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(database_url))
    yield engine
    engine.dispose()


@pytest.mark.parametrize("model", [MemoryLog, MemoryTenant])
def test_the_mapping_matches_the_migrated_table(engine: Engine, model: type) -> None:
    table = model.__table__
    migrated = {c["name"]: c["nullable"] for c in inspect(engine).get_columns(table.name)}
    mapped = {c.name: c.nullable for c in table.columns}
    assert mapped == migrated


def test_a_memory_written_through_the_mapping_is_embedded_by_the_pipeline(
    engine: Engine, store: MemoryStore, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant("orm")
    when = datetime(2025, 2, 3, 4, 5, tzinfo=UTC)
    with Session(engine) as session:
        memory = MemoryLog(
            user_id=tenant.user_id,
            project_id=tenant.project_id,
            raw_data={"content": "The staging database password rotates every Monday."},
            external_id="orm-1",
            occurred_at=when,
        )
        session.add(memory)
        session.commit()
        assert (memory.status, memory.tenant_key) == ("pending", tenant.key)
        log_id = memory.id

    store.process_pending(tenant.user_id, tenant.project_id)  # what the sensor's run calls

    with Session(engine) as session:
        memory = session.get_one(MemoryLog, log_id)
        assert memory.status == "embedded" and memory.occurred_at == when
        assert memory.embedding_model == store.embedder.model_id
        assert memory.embedding is not None
        assert len(memory.embedding) == store.embedder.dimension
        assert np.isclose(np.linalg.norm(memory.embedding), 1.0, atol=1e-3)
        assert "password rotates" in (memory.search_text or "")
        registered = session.scalars(
            select(MemoryTenant).where(MemoryTenant.tenant_key == tenant.key)
        ).one()
        assert registered.tenant == tenant

        memory.raw_data = {"content": "The staging password now rotates daily."}
        session.commit()
        assert memory.status == "pending"  # the trigger's doing, read back after the update
    store.process_pending(tenant.user_id, tenant.project_id)
    hits = store.search_similar_memories(
        "when does the staging password rotate", tenant.user_id, tenant.project_id
    )
    assert [h.log_id for h in hits] == [log_id]


def test_the_mapping_refuses_what_every_front_door_refuses() -> None:
    with pytest.raises(ValueError, match="user_id"):
        MemoryLog(user_id="", project_id="p", raw_data={})
    with pytest.raises(ValueError, match="raw_data must be a JSON object"):
        MemoryLog(user_id="u", project_id="p", raw_data=[1, 2])
    with pytest.raises(ValueError, match="external_id"):
        MemoryLog(user_id="u", project_id="p", raw_data={}, external_id="")


def test_a_repeated_external_id_is_an_integrity_error(
    engine: Engine, new_tenant: Callable[..., Tenant]
) -> None:
    tenant = new_tenant("orm-dup")
    with Session(engine) as session:
        for _ in range(2):
            session.add(
                MemoryLog(
                    user_id=tenant.user_id,
                    project_id=tenant.project_id,
                    raw_data={"content": "same"},
                    external_id="dup",
                )
            )
        with pytest.raises(IntegrityError):
            session.commit()
