"""The connection pool's two kinds of connection (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from memory_pipeline.storage.database import Database


@pytest.fixture
def one_connection_db(database_url: str) -> Iterator[Database]:
    """A pool of exactly one connection, so every checkout is the same connection."""
    db = Database(database_url, max_size=1)
    try:
        yield db
    finally:
        db.close()


def test_autocommit_reads_hold_no_transaction_and_the_pool_gets_its_mode_back(
    one_connection_db: Database,
) -> None:
    with one_connection_db.autocommit_connection() as conn:
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        assert conn.info.transaction_status == TransactionStatus.IDLE  # nothing left open
        with conn.transaction():
            conn.execute("SELECT set_config('application_name', 'inside', true)")
            assert conn.info.transaction_status == TransactionStatus.INTRANS
        # a setting local to that transaction ended with it
        assert conn.execute("SHOW application_name").fetchone()["application_name"] != "inside"
    with one_connection_db.connection() as conn:
        assert conn.autocommit is False
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == TransactionStatus.INTRANS


def test_an_error_inside_still_gives_the_pool_back_its_mode(one_connection_db: Database) -> None:
    with pytest.raises(ZeroDivisionError), one_connection_db.autocommit_connection() as conn:
        conn.execute("SELECT 1")
        raise ZeroDivisionError
    with one_connection_db.connection() as conn:
        assert conn.autocommit is False


def test_a_connection_lost_inside_raises_its_own_error_and_the_pool_recovers(
    one_connection_db: Database,
) -> None:
    with (
        pytest.raises(psycopg.errors.AdminShutdown),  # not an error of the reset
        one_connection_db.autocommit_connection() as conn,
    ):
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    with one_connection_db.connection() as conn:  # a fresh connection replaces the lost one
        assert conn.execute("SELECT 2 AS two").fetchone() == {"two": 2}
        assert conn.autocommit is False
