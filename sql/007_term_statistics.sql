-- Keyword search at any tenant size (memory_pipeline.search.keyword).
--
-- BM25 needs, per tenant, how many embedded memories hold each term (df), how many there are
-- (N) and their average length. Counting them at query time costs a scan of the tenant (80 ms
-- at 100k memories), so triggers keep them: every statement that changes which memories are
-- embedded, or their text, appends its net change to memory_term_stats_delta. Appends take no
-- locks that could conflict or deadlock with the pipeline's claims; the pipeline folds the
-- deltas into memory_term_stats after each batch, and readers add both, so the figures are
-- exact at every commit.

-- Scoring a candidate reads its search_tsv: keep it in the row (it is ~1 KB) and let raw_data,
-- search_text and embedding move to TOAST instead, which halves the cost of scoring (rows
-- written before this migration keep their layout until rewritten, e.g. by VACUUM FULL).
ALTER TABLE memory_log ALTER COLUMN search_tsv SET STORAGE MAIN;

CREATE TABLE IF NOT EXISTS memory_term_stats (
    tenant_key  text   NOT NULL,
    term        text   NOT NULL,  -- a lexeme of search_tsv, or '' for the tenant's totals
    docs        bigint NOT NULL,  -- embedded memories holding the term ('': all of them)
    length      bigint NOT NULL DEFAULT 0,  -- '' only: the sum of length(search_tsv)
    removed     bigint NOT NULL DEFAULT 0,  -- '' only: memories that left (deleted, re-pended), ever
    PRIMARY KEY (tenant_key, term)
);

CREATE TABLE IF NOT EXISTS memory_term_stats_delta (
    tenant_key  text   NOT NULL,
    term        text   NOT NULL,
    docs        bigint NOT NULL,
    length      bigint NOT NULL,
    removed     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_term_stats_delta_idx ON memory_term_stats_delta (tenant_key, term);

-- What one memory contributes to its tenant's statistics, times sign (+1 in, -1 out).
CREATE OR REPLACE FUNCTION memory_term_stats_of(doc tsvector, sign integer)
RETURNS TABLE (term text, docs bigint, length bigint, removed bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT t, sign, 0, 0 FROM unnest(tsvector_to_array(doc)) AS t
    UNION ALL
    SELECT '', sign, sign * length(doc), CASE WHEN sign < 0 THEN 1 ELSE 0 END
$$;

CREATE OR REPLACE FUNCTION memory_log_term_stats() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO memory_term_stats_delta (tenant_key, term, docs, length, removed)
        SELECT o.tenant_key, s.term, sum(s.docs), sum(s.length), sum(s.removed)
        FROM old_rows o CROSS JOIN LATERAL memory_term_stats_of(o.search_tsv, -1) s
        WHERE o.status = 'embedded'
        GROUP BY o.tenant_key, s.term;
    ELSE
        -- Only memories whose embedded-ness or text changed count; the rest cancel out.
        INSERT INTO memory_term_stats_delta (tenant_key, term, docs, length, removed)
        SELECT c.tenant_key, s.term, sum(s.docs), sum(s.length), sum(s.removed)
        FROM (
            SELECT o.tenant_key, o.search_tsv AS doc, -1 AS sign
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.status = 'embedded'
              AND (n.status <> 'embedded' OR n.search_tsv <> o.search_tsv)
            UNION ALL
            SELECT n.tenant_key, n.search_tsv, 1
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status = 'embedded'
              AND (o.status <> 'embedded' OR n.search_tsv <> o.search_tsv)
        ) AS c CROSS JOIN LATERAL memory_term_stats_of(c.doc, c.sign) s
        GROUP BY c.tenant_key, s.term
        HAVING sum(s.docs) <> 0 OR sum(s.length) <> 0 OR sum(s.removed) <> 0;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS memory_log_term_stats_update ON memory_log;
CREATE TRIGGER memory_log_term_stats_update AFTER UPDATE ON memory_log
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memory_log_term_stats();
DROP TRIGGER IF EXISTS memory_log_term_stats_delete ON memory_log;
CREATE TRIGGER memory_log_term_stats_delete AFTER DELETE ON memory_log
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memory_log_term_stats();

-- The statistics as of now: folded figures plus pending deltas. Filters on tenant_key and term
-- reach both tables' indexes (they are the grouping keys).
CREATE OR REPLACE VIEW memory_term_stats_now AS
SELECT tenant_key, term, sum(docs) AS docs, sum(length) AS length, sum(removed) AS removed
FROM (SELECT tenant_key, term, docs, length, removed FROM memory_term_stats
      UNION ALL
      SELECT tenant_key, term, docs, length, removed FROM memory_term_stats_delta) AS s
GROUP BY tenant_key, term;

-- Fold the tenants' deltas into memory_term_stats. Compactions of one tenant take turns (an
-- advisory lock, keys in order), so a delta is never counted twice or lost.
CREATE OR REPLACE FUNCTION memory_term_stats_compact(keys text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('terms:' || k, 0))
    FROM (SELECT DISTINCT unnest(keys) AS k ORDER BY 1) AS ordered;
    WITH moved AS (
        DELETE FROM memory_term_stats_delta WHERE tenant_key = ANY(keys)
        RETURNING tenant_key, term, docs, length, removed
    ), summed AS (
        SELECT tenant_key, term, sum(docs) AS docs, sum(length) AS length,
               sum(removed) AS removed
        FROM moved GROUP BY tenant_key, term
    )
    INSERT INTO memory_term_stats AS s (tenant_key, term, docs, length, removed)
    SELECT tenant_key, term, docs, length, removed FROM summed ORDER BY tenant_key, term
    ON CONFLICT (tenant_key, term) DO UPDATE
        SET docs = s.docs + excluded.docs, length = s.length + excluded.length,
            removed = s.removed + excluded.removed;
    GET DIAGNOSTICS folded = ROW_COUNT;
    RETURN folded;
END $$;

-- Champion lists (Manning, Raghavan & Schütze, Introduction to Information Retrieval §7.1.3):
-- for each term held by more memories than a list's length, the memories where it weighs most
-- in BM25, best first, with those weights. Keyword search takes its candidates for such common
-- terms from here instead of visiting every memory that holds them; terms rarer than that come
-- from the GIN index, which is always current. Derived data, kept by the pipeline
-- (memory_pipeline.storage.term_stats): newly embedded memories are merged in, and the lists
-- are rebuilt from scratch once many memories have left.
CREATE TABLE IF NOT EXISTS memory_term_champion (
    tenant_key  text     NOT NULL,
    term        text     NOT NULL,
    log_ids     bigint[] NOT NULL,
    weights     real[]   NOT NULL,
    PRIMARY KEY (tenant_key, term)
);

CREATE TABLE IF NOT EXISTS memory_term_champion_build (
    tenant_key        text        PRIMARY KEY,
    removed_at_build  bigint      NOT NULL,  -- memory_term_stats '' removed when last rebuilt
    list_length       integer     NOT NULL,
    built_at          timestamptz NOT NULL DEFAULT now()
);

-- Statistics of the memories embedded before this migration.
INSERT INTO memory_term_stats (tenant_key, term, docs, length, removed)
SELECT m.tenant_key, s.term, sum(s.docs), sum(s.length), sum(s.removed)
FROM memory_log m CROSS JOIN LATERAL memory_term_stats_of(m.search_tsv, 1) s
WHERE m.status = 'embedded'
GROUP BY m.tenant_key, s.term
ON CONFLICT (tenant_key, term) DO NOTHING;
