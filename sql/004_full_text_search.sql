-- Keyword retrieval for hybrid search: a generated tsvector over search_text with a GIN index.
ALTER TABLE memory_log ADD COLUMN IF NOT EXISTS search_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', coalesce(search_text, ''))) STORED;
CREATE INDEX IF NOT EXISTS memory_log_search_tsv_idx ON memory_log USING gin (search_tsv);
