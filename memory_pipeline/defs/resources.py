"""Dagster resources wrapping the plain-Python core (Postgres, Chroma, the embedder, search).

Unset fields fall back to the environment (``MEMORY_PIPELINE_*``), starting the home's local
services when nothing is configured — the same rule the CLI and ``MemoryStore.from_env`` follow.
Connections and the model are created once per process.
"""

import functools
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from memory_pipeline.embedding import Embedder, load_embedder
from memory_pipeline.embedding.backends import model_id_for
from memory_pipeline.local_services import ensure_services
from memory_pipeline.search import MemorySearch, SearchRequest, SearchResult
from memory_pipeline.search.second_stage import second_stage_of
from memory_pipeline.settings import Settings
from memory_pipeline.storage.database import Database
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.vector_store import ChromaVectorStore, connect_chroma


@functools.cache
def _database(url: str) -> Database:
    apply_migrations(url)
    return Database(url)


@functools.cache
def _vector_store(host: str, port: int, token: str | None) -> ChromaVectorStore:
    return ChromaVectorStore(connect_chroma(host, port, token))


class PostgresResource(ConfigurableResource):
    """The source-of-truth database."""

    database_url: str | None = Field(
        default=None,
        description="libpq URI; unset: MEMORY_PIPELINE_DATABASE_URL or the home's embedded server",
    )

    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return ensure_services(Settings.from_env()).database_url

    def database(self) -> Database:
        return _database(self.url())


class ChromaResource(ConfigurableResource):
    """The Chroma server holding one collection per tenant."""

    host: str | None = Field(
        default=None, description="unset: MEMORY_PIPELINE_CHROMA_HOST or the local server"
    )
    port: int | None = Field(default=None, description="unset: MEMORY_PIPELINE_CHROMA_PORT (8000)")
    token: str | None = Field(default=None, description="unset: MEMORY_PIPELINE_CHROMA_TOKEN")

    def vector_store(self) -> ChromaVectorStore:
        if self.host:
            settings = Settings.from_env()
            return _vector_store(
                self.host, self.port or settings.chroma_port, self.token or settings.chroma_token
            )
        ep = ensure_services(Settings.from_env())
        return _vector_store(
            ep.chroma_host, self.port or ep.chroma_port, self.token or ep.chroma_token
        )


class EmbedderResource(ConfigurableResource):
    """The sentence-transformers model (loaded on first use, once per process)."""

    model_name: str | None = Field(
        default=None, description="unset: MEMORY_PIPELINE_EMBEDDING_MODEL"
    )
    batch_size: int | None = Field(
        default=None, description="unset: MEMORY_PIPELINE_EMBEDDING_BATCH_SIZE"
    )
    model_source: str | None = Field(
        default=None, description="a local folder or hub name to load instead of model_name"
    )
    device: str | None = Field(
        default=None, description="torch device, e.g. 'cuda'; unset: automatic"
    )
    precision: str | None = Field(
        default=None,
        description="auto, float32 or bfloat16; unset: MEMORY_PIPELINE_EMBEDDING_PRECISION",
    )

    def model_id(self) -> str:
        """The configured model id (name and backend), without loading the model."""
        settings = Settings.from_env()
        return model_id_for(
            self.model_name or settings.embedding_model,
            settings.embedding_backend,
            settings.sentence_vectors,
        )

    def embedder(self) -> Embedder:
        settings = Settings.from_env()
        return load_embedder(
            self.model_name or settings.embedding_model,
            batch_size=self.batch_size or settings.embedding_batch_size,
            model_source=self.model_source,
            device=self.device,
            precision=self.precision or settings.embedding_precision,
            trace_queries=settings.query_trace,
            backend=settings.embedding_backend,
            exports_dir=settings.models_dir,
            sentence_vectors=settings.sentence_vectors,
        )


class SearchResource(ConfigurableResource):
    """Tenant-scoped memory search for assets, jobs and notebooks."""

    postgres: PostgresResource
    chroma: ChromaResource
    embedder: EmbedderResource

    def searcher(self) -> MemorySearch:
        settings = Settings.from_env()  # as MemoryStore's search
        return MemorySearch(
            self.postgres.database(),
            self.chroma.vector_store(),
            self.embedder.embedder(),
            second_stage=second_stage_of(settings),
            exact_max_vectors=settings.exact_search_max_vectors,
        )

    def search_similar_memories(
        self, query: str, user_id: str, project_id: str, limit: int = 10, **options: Any
    ) -> list[SearchResult]:
        """See ``MemoryStore.search_similar_memories`` (DESIGN §5)."""
        request = SearchRequest.of([query], user_id, project_id, limit, **options)
        return self.searcher().run(request)[0]

    def search_many(
        self, queries: list[str], user_id: str, project_id: str, limit: int = 10, **options: Any
    ) -> list[list[SearchResult]]:
        """Many queries for one tenant; the other arguments as ``search_similar_memories``."""
        return self.searcher().run(SearchRequest.of(queries, user_id, project_id, limit, **options))


def default_resources() -> dict[str, Any]:
    """The resources of the code location, configured from the environment at run time."""
    postgres, chroma, embedder = PostgresResource(), ChromaResource(), EmbedderResource()
    return {
        "postgres": postgres,
        "chroma": chroma,
        "embedder": embedder,
        "search": SearchResource(postgres=postgres, chroma=chroma, embedder=embedder),
    }


__all__ = [
    "ChromaResource",
    "EmbedderResource",
    "PostgresResource",
    "SearchResource",
    "default_resources",
]
