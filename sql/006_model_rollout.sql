-- Model changes without search downtime: each tenant records the model whose vectors serve its
-- searches (live_model); vectors of a new model are built aside and switched to when complete.
ALTER TABLE memory_tenant ADD COLUMN IF NOT EXISTS live_model text;
-- Where a model's weights were loaded from, so any process can embed queries for a tenant whose
-- live model is not the configured one (during a rollout).
ALTER TABLE embedding_model ADD COLUMN IF NOT EXISTS model_source text;
-- Tenants embedded before this migration: their live model is the one their rows carry.
UPDATE memory_tenant t SET live_model = (
    SELECT m.embedding_model FROM memory_log m
    WHERE m.tenant_key = t.tenant_key AND m.status = 'embedded' AND m.embedding_model IS NOT NULL
    LIMIT 1)
WHERE t.live_model IS NULL;
