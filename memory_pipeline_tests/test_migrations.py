"""The schema in sql/: ordered, recorded, idempotent; and the database agrees with Python."""

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_pipeline.storage.migrations import apply_migrations, discover_migrations
from memory_pipeline.storage.vector_indexes import ensure_model_index, index_name_for
from memory_pipeline.tenancy import tenant_key


def test_migrations_apply_once_and_are_a_no_op_the_second_time(database_url):
    assert apply_migrations(database_url) == []
    with psycopg.connect(database_url) as conn:
        recorded = [
            r[0] for r in conn.execute("SELECT version FROM schema_migration ORDER BY version")
        ]
    assert recorded == [m.version for m in discover_migrations()]


def test_migrations_on_a_fresh_database_create_the_tables(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS migration_probe")
        conn.execute("CREATE DATABASE migration_probe")
    probe_url = database_url.replace("/memory_pipeline?", "/migration_probe?")
    try:
        first = apply_migrations(probe_url)
        second = apply_migrations(probe_url)
        with psycopg.connect(probe_url) as conn:
            tables = {
                r[0]
                for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS migration_probe WITH (FORCE)")
    assert first == [m.version for m in discover_migrations()]
    assert second == []
    assert {"memory_log", "memory_vector", "memory_tenant", "memory_tombstone"} <= tables


def test_model_index_is_created_once_with_the_models_dimension(database_url):
    ensure_model_index(database_url, "test/probe-model", 8)
    ensure_model_index(database_url, "test/probe-model", 8)
    with psycopg.connect(database_url) as conn:
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
            (index_name_for("test/probe-model"),),
        ).fetchone()[0]
    assert "hnsw" in indexdef and "vector(8)" in indexdef and "test/probe-model" in indexdef


def test_a_model_cannot_change_its_dimension(database_url):
    ensure_model_index(database_url, "test/fixed-dim", 4)
    with pytest.raises(ValueError, match="dimension"):
        ensure_model_index(database_url, "test/fixed-dim", 5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30),
    st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30),
)
def test_database_and_python_derive_the_same_tenant_key(database_url, user, project):
    with psycopg.connect(database_url) as conn:
        (db_key,) = conn.execute(
            "SELECT memory_pipeline_tenant_key(%s, %s)", (user, project)
        ).fetchone()
    assert db_key == tenant_key(user, project)
