-- Tenant shards (docs/decisions/0203-tenant-shards.md): past a number of tenants a home keeps
-- one Dagster partition and one Chroma collection per model for each shard, a stable hash
-- bucket of tenant_key, instead of one per tenant.

-- The home's layout: one row. shards NULL: partitions and collections per tenant.
CREATE TABLE IF NOT EXISTS tenant_layout (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    shards      integer CHECK (shards > 0),
    sharded_at  timestamptz
);
INSERT INTO tenant_layout (singleton) VALUES (true) ON CONFLICT DO NOTHING;

-- The shard rule of memory_pipeline.tenancy.shard_of (a test holds both equal): the first
-- 32 bits of the key, modulo the shard count.
CREATE OR REPLACE FUNCTION memory_pipeline_tenant_shard(tenant_key text, shards integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (('x' || left(tenant_key, 8))::bit(32)::bigint % shards)::integer
$$;

-- Where the tenant's vectors live in Chroma: NULL, its own collection memory_logs_<key>; a
-- number, that shard's collections. Tenants of a home that became sharded keep NULL until their
-- shard's next run moves their vectors (from pgvector, no re-embedding).
ALTER TABLE memory_tenant ADD COLUMN IF NOT EXISTS shard integer;
CREATE INDEX IF NOT EXISTS memory_tenant_shard_idx ON memory_tenant (shard);
CREATE INDEX IF NOT EXISTS memory_tenant_unplaced_idx ON memory_tenant (tenant_key)
    WHERE shard IS NULL;
CREATE INDEX IF NOT EXISTS memory_tenant_user_idx ON memory_tenant (user_id);
CREATE INDEX IF NOT EXISTS memory_tenant_project_idx ON memory_tenant (project_id);

-- A new tenant of a sharded home goes straight to its shard (it has no vectors to move).
CREATE OR REPLACE FUNCTION memory_log_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memory_tenant (tenant_key, user_id, project_id, shard)
    SELECT DISTINCT n.tenant_key, n.user_id, n.project_id,
           CASE WHEN l.shards IS NULL THEN NULL
                ELSE memory_pipeline_tenant_shard(n.tenant_key, l.shards) END
    FROM new_rows n LEFT JOIN tenant_layout l ON l.singleton
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
