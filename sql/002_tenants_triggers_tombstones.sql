-- Tenants, the rules that keep rows honest for writers outside the Python API, and tombstones.

-- The tenant key rule of DESIGN §3, also in memory_pipeline.tenancy.tenant_key (a test checks
-- that both agree): applications may INSERT rows directly, so the database derives the key.
CREATE OR REPLACE FUNCTION memory_pipeline_tenant_key(user_id text, project_id text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT left(encode(sha256(convert_to(
        replace(replace(user_id, '%', '%25'), ':', '%3A') || ':' ||
        replace(replace(project_id, '%', '%25'), ':', '%3A'), 'UTF8')), 'hex'), 16)
$$;

CREATE TABLE IF NOT EXISTS memory_tenant (
    tenant_key  text PRIMARY KEY,
    user_id     text NOT NULL,
    project_id  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, project_id)
);

CREATE OR REPLACE FUNCTION memory_log_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.tenant_key := memory_pipeline_tenant_key(NEW.user_id, NEW.project_id);
    NEW.status := 'pending';
    NEW.updated_at := now();
    IF NOT NEW.occurred_at_explicit THEN
        NEW.occurred_at := NEW.created_at;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION memory_log_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memory_tenant (tenant_key, user_id, project_id)
    SELECT DISTINCT tenant_key, user_id, project_id FROM new_rows
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- A change of raw_data puts the row back to pending; the tenant of a row never changes.
CREATE OR REPLACE FUNCTION memory_log_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id IS DISTINCT FROM OLD.user_id OR NEW.project_id IS DISTINCT FROM OLD.project_id
       OR NEW.tenant_key IS DISTINCT FROM OLD.tenant_key THEN
        RAISE EXCEPTION 'memory_log %: the tenant of a memory cannot change', OLD.id;
    END IF;
    IF NEW.raw_data IS DISTINCT FROM OLD.raw_data THEN
        NEW.status := 'pending';
        NEW.attempts := 0;
        NEW.last_error := NULL;
        NEW.next_attempt_at := NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- Deleting a row records a tombstone in the same transaction; the tenant's next run removes
-- its vectors from Chroma, so no delete is lost while Chroma is down.
CREATE TABLE IF NOT EXISTS memory_tombstone (
    log_id      bigint PRIMARY KEY,
    tenant_key  text NOT NULL,
    user_id     text NOT NULL,
    project_id  text NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memory_tombstone_tenant_idx ON memory_tombstone (tenant_key);

CREATE OR REPLACE FUNCTION memory_log_after_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memory_tombstone (log_id, tenant_key, user_id, project_id)
    SELECT id, tenant_key, user_id, project_id FROM old_rows
    ON CONFLICT (log_id) DO NOTHING;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS memory_log_before_insert ON memory_log;
CREATE TRIGGER memory_log_before_insert BEFORE INSERT ON memory_log
    FOR EACH ROW EXECUTE FUNCTION memory_log_before_insert();
DROP TRIGGER IF EXISTS memory_log_after_insert ON memory_log;
CREATE TRIGGER memory_log_after_insert AFTER INSERT ON memory_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_log_after_insert();
DROP TRIGGER IF EXISTS memory_log_before_update ON memory_log;
CREATE TRIGGER memory_log_before_update BEFORE UPDATE ON memory_log
    FOR EACH ROW EXECUTE FUNCTION memory_log_before_update();
DROP TRIGGER IF EXISTS memory_log_after_delete ON memory_log;
CREATE TRIGGER memory_log_after_delete AFTER DELETE ON memory_log
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_log_after_delete();
