-- API keys of the memory service (DESIGN §5 "Service"; memory_pipeline.service.keys).
-- A key reads `mpk_<lookup_id>_<secret>`: the lookup id finds the row, and only the SHA-256 of
-- the secret is stored (256 random bits need no slow hash; a leaked table yields no key).
-- A tenant key reaches one tenant; an admin key (no tenant) reaches every tenant.
CREATE TABLE IF NOT EXISTS api_key (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lookup_id      text        NOT NULL UNIQUE,
    secret_sha256  bytea       NOT NULL,
    name           text,
    is_admin       boolean     NOT NULL DEFAULT false,
    user_id        text,
    project_id     text,
    tenant_key     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CONSTRAINT api_key_scope CHECK (
        (is_admin AND user_id IS NULL AND project_id IS NULL AND tenant_key IS NULL)
        OR (NOT is_admin AND user_id IS NOT NULL AND project_id IS NOT NULL
            AND tenant_key = memory_pipeline_tenant_key(user_id, project_id)))
);
