-- Embedding models seen by this database, with their dimension. The per-model partial HNSW index
-- on memory_vector is created by the application once a model's dimension is known
-- (memory_pipeline.storage.vector_indexes), since nothing may assume one dimension.
CREATE TABLE IF NOT EXISTS embedding_model (
    model_id    text PRIMARY KEY,
    dimension   integer NOT NULL CHECK (dimension > 0),
    index_name  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
