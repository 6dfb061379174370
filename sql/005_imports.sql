-- Bulk import (DESIGN §5 `import`): a staging table that COPY fills, and a ledger of imported files.

-- Validated records land here through COPY, one batch (batch_id) at a time, then move to
-- memory_log in one INSERT ... SELECT ... ON CONFLICT DO NOTHING and are deleted, all inside the
-- importing transaction, so other sessions never see a batch. UNLOGGED: nothing here has to
-- survive a crash (the transaction that wrote it would be rolled back anyway).
CREATE UNLOGGED TABLE IF NOT EXISTS memory_log_import_staging (
    batch_id     bigint      NOT NULL,
    line         bigint      NOT NULL,  -- where the record is in its file (see memory_pipeline.imports)
    user_id      text        NOT NULL,
    project_id   text        NOT NULL,
    tenant_key   text        NOT NULL,  -- memory_pipeline.tenancy.tenant_key, for de-duplication
    external_id  text,
    raw_data     jsonb       NOT NULL,
    created_at   timestamptz,
    occurred_at  timestamptz
);
CREATE INDEX IF NOT EXISTS memory_log_import_staging_batch_idx
    ON memory_log_import_staging (batch_id);

-- One value per batch: concurrent imports never share staging rows.
CREATE SEQUENCE IF NOT EXISTS memory_log_import_batch_seq;

-- Files already imported, by the sha256 of their bytes: importing the same content again (under
-- any name) inserts nothing. A row is written in the transaction that imported the file.
CREATE TABLE IF NOT EXISTS memory_log_import_file (
    content_sha256  text        PRIMARY KEY,
    file_name       text        NOT NULL,   -- the path it was first imported from
    size_bytes      bigint      NOT NULL,
    records         bigint      NOT NULL,   -- records read (valid or not)
    inserted        bigint      NOT NULL,
    duplicates      bigint      NOT NULL,
    rejected        bigint      NOT NULL,
    reject_file     text,
    imported_at     timestamptz NOT NULL DEFAULT now()
);
