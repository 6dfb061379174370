"""Storage: the PostgreSQL schema (``sql/``), connections and every query on memory_log."""
