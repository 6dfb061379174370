"""Connections to the source-of-truth database (psycopg 3 pool + pgvector adapters)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and errors)."""
    return re.sub(r"(://[^:/@?]*:)[^@/]*@", r"\1***@", url)


class Database:
    """A small pool of connections to one database, with pgvector registered on each."""

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"row_factory": dict_row},
            configure=self._configure,
            open=False,
            name="memory_pipeline",
        )
        try:
            self._pool.open(wait=True, timeout=30)
        except psycopg.Error as exc:
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}"
            ) from exc
        except Exception as exc:  # psycopg_pool.PoolTimeout
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}"
            ) from exc

    @staticmethod
    def _configure(conn: psycopg.Connection) -> None:
        register_vector(conn)
        conn.commit()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; its transaction commits on success and rolls back on error.

        When the server went away (restarted), the error reaches the caller once and every
        other idle connection of the pool is tested and replaced at the same time, so the next
        request gets a working connection instead of the next stale one.
        """
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError:
            self._pool.check()
            raise

    @contextmanager
    def autocommit_connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit mode, for reads: each statement commits itself.

        One round trip per read instead of three
        (docs/decisions/0007-autocommit-search-connection.md); ``conn.transaction()`` still
        groups statements that need one transaction. The connection goes back to the pool in
        its usual mode.
        """
        try:
            with self._pool.connection() as conn:
                conn.autocommit = True
                try:
                    yield conn
                finally:
                    if not conn.closed:  # a lost connection is the pool's to drop, not to reset
                        conn.autocommit = False
        except psycopg.OperationalError:
            self._pool.check()  # as in connection(): the other stale connections go now
            raise

    def close(self) -> None:
        self._pool.close()


def connect_once(url: str, *, autocommit: bool = True) -> psycopg.Connection:
    """A single connection outside the pool (migrations, admin work)."""
    try:
        return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row)
    except psycopg.Error as exc:
        raise ConnectionError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc
