"""The staging step of an import: COPY a batch into the staging table, then one INSERT ... SELECT.

Every function takes an open psycopg connection inside the caller's transaction, so a batch is
never visible to other sessions and a failed import leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import psycopg

from memory_pipeline.imports.records import ImportRow

STAGING_TABLE = "memory_log_import_staging"
_COLUMNS = ("batch_id",) + ImportRow._fields

# The batch's rows in file order, de-duplicated on (tenant, external_id) keeping the first, into
# memory_log; a (tenant, external_id) already there is skipped by ON CONFLICT. The triggers of
# sql/002 compute tenant_key, force `pending` and derive occurred_at from created_at when no
# explicit occurred_at is given.
_INSERT_FROM_STAGING = f"""
WITH ranked AS (
    SELECT s.*, row_number() OVER (
               PARTITION BY s.tenant_key, s.external_id ORDER BY s.line) AS nth
    FROM {STAGING_TABLE} s
    WHERE s.batch_id = %(batch_id)s
)
INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data, external_id,
                        created_at, occurred_at, occurred_at_explicit)
SELECT user_id, project_id, tenant_key, raw_data, external_id,
       coalesce(created_at, now()), coalesce(occurred_at, created_at, now()),
       occurred_at IS NOT NULL
FROM ranked
WHERE external_id IS NULL OR nth = 1
ORDER BY line
ON CONFLICT (tenant_key, external_id) WHERE external_id IS NOT NULL DO NOTHING
"""


class BatchResult(NamedTuple):
    """What one staged batch did: rows copied into staging, and rows new to memory_log."""

    batch_id: int
    staged: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.staged - self.inserted


def load_batch(conn: psycopg.Connection, rows: Sequence[ImportRow]) -> BatchResult:
    """Move ``rows`` into memory_log through the staging table: COPY, INSERT ... SELECT, DELETE.

    Three statements per batch whatever its size (plus one ``nextval``).
    """
    batch_id = int(
        conn.execute("SELECT nextval('memory_log_import_batch_seq') AS id").fetchone()["id"]  # type: ignore[index]
    )
    with conn.cursor() as cur:
        with cur.copy(f"COPY {STAGING_TABLE} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((batch_id, *row))
        inserted = cur.execute(_INSERT_FROM_STAGING, {"batch_id": batch_id}).rowcount
        cur.execute(f"DELETE FROM {STAGING_TABLE} WHERE batch_id = %s", (batch_id,))
    return BatchResult(batch_id, len(rows), inserted)
