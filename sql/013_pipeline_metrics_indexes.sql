-- /metrics reads the pipeline's gauges at every scrape (storage/pipeline_metrics.py): counts
-- per state come from an index-only scan, the oldest waiting row and recent embeddings from
-- one index probe each, whatever the number of tenants.
CREATE INDEX IF NOT EXISTS memory_log_status_created_idx ON memory_log (status, created_at);
CREATE INDEX IF NOT EXISTS memory_log_embedded_at_idx ON memory_log (embedded_at)
    WHERE embedded_at IS NOT NULL;
