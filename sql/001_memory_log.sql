-- memory_log: the source of truth (DESIGN §2).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS memory_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          text        NOT NULL,
    project_id       text        NOT NULL,
    tenant_key       text        NOT NULL,
    raw_data         jsonb       NOT NULL,
    external_id      text,
    memory_type      text        NOT NULL DEFAULT 'other',
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    occurred_at_explicit boolean   NOT NULL DEFAULT false,
    search_text      text,
    text_truncated   boolean     NOT NULL DEFAULT false,
    content_hash     text,
    embedding        vector,
    embedding_model  text,
    chunk_count      integer     NOT NULL DEFAULT 0,
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    embedded_at      timestamptz,
    CONSTRAINT memory_log_user_id_valid CHECK (
        char_length(user_id) BETWEEN 1 AND 255 AND user_id !~ '[[:cntrl:]]'),
    CONSTRAINT memory_log_project_id_valid CHECK (
        char_length(project_id) BETWEEN 1 AND 255 AND project_id !~ '[[:cntrl:]]'),
    CONSTRAINT memory_log_raw_data_is_object CHECK (jsonb_typeof(raw_data) = 'object'),
    CONSTRAINT memory_log_status_valid CHECK (
        status IN ('pending', 'embedded', 'skipped', 'failed', 'dead')),
    CONSTRAINT memory_log_memory_type_valid CHECK (
        memory_type IN ('work_log', 'conversation_turn', 'note', 'other'))
);

CREATE INDEX IF NOT EXISTS memory_log_tenant_key_idx ON memory_log (tenant_key, id);
CREATE UNIQUE INDEX IF NOT EXISTS memory_log_tenant_external_id_key
    ON memory_log (tenant_key, external_id) WHERE external_id IS NOT NULL;
-- What the sensor and process_pending look for: small, because finished rows leave it.
CREATE INDEX IF NOT EXISTS memory_log_workable_idx
    ON memory_log (tenant_key, id) WHERE status IN ('pending', 'failed');

-- Every vector of a memory: chunk 0 has vector id str(id), chunk n has f"{id}#{n}" (the same ids
-- as in Chroma). memory_log.embedding keeps a copy of chunk 0 for convenience.
-- One row per (model, vector): vectors of a model being rolled out live beside the active ones.
CREATE TABLE IF NOT EXISTS memory_vector (
    log_id           bigint   NOT NULL REFERENCES memory_log (id) ON DELETE CASCADE,
    embedding_model  text     NOT NULL,
    chunk_index      integer  NOT NULL CHECK (chunk_index >= 0),
    vector_id        text     NOT NULL GENERATED ALWAYS AS (
        CASE WHEN chunk_index = 0 THEN log_id::text ELSE log_id::text || '#' || chunk_index::text END
    ) STORED,
    tenant_key       text     NOT NULL,
    chunk_text       text     NOT NULL,
    embedding        vector   NOT NULL,
    PRIMARY KEY (log_id, embedding_model, chunk_index)
);
CREATE INDEX IF NOT EXISTS memory_vector_tenant_idx ON memory_vector (tenant_key, embedding_model, log_id);
