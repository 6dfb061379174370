"""The pipeline's gauges for ``/metrics``: rows per state, oldest waiting row, embedding lag.

Every query aggregates over ``memory_log`` as a whole through the indexes of
``sql/013_pipeline_metrics_indexes.sql`` (never per tenant), so a scrape stays cheap with
100k tenants. Every function takes an open psycopg connection; the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from memory_pipeline.storage.tenant_status import ROW_STATES

#: Rows embedded this many seconds ago or less make the embedding-lag gauge.
LAG_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class PipelineGauges:
    """One scrape's view of the pipeline, over all tenants."""

    rows_by_status: dict[str, int]
    #: Seconds since the oldest ``pending`` row was written (0 when none waits).
    oldest_pending_age_seconds: float
    #: Mean seconds from first write to embedding of new rows embedded in the last window
    #: (0: none); rows written over an hour before are left out (edits would read as lag).
    embedding_lag_seconds: float
    #: Rows counted in that mean.
    recently_embedded: int


def read_gauges(conn: psycopg.Connection) -> PipelineGauges:
    """The gauges, from three index-backed queries."""
    counts = dict.fromkeys(ROW_STATES, 0)
    for row in conn.execute(
        "SELECT status, count(*) AS n FROM memory_log GROUP BY status"
    ).fetchall():
        counts[row["status"]] = int(row["n"])
    oldest = conn.execute(
        """SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age
             FROM memory_log WHERE status = 'pending'"""
    ).fetchone()
    lag = conn.execute(
        """SELECT coalesce(avg(extract(epoch FROM embedded_at - created_at)), 0) AS lag,
                  count(*) AS n
             FROM memory_log
            WHERE embedded_at IS NOT NULL
              AND embedded_at >= now() - make_interval(secs => %s)
              AND created_at >= now() - interval '1 hour'""",
        (LAG_WINDOW_SECONDS,),
    ).fetchone()
    return PipelineGauges(
        counts, max(float(oldest["age"]), 0.0), max(float(lag["lag"]), 0.0), int(lag["n"])
    )
