"""``MemoryPipelineRetriever``: a LangChain retriever over ``MemoryStore`` or ``MemoryClient``.

Needs the ``langchain`` extra (``pip install 'memory_pipeline[langchain]'``). Each
``SearchResult`` becomes a ``Document``: its text is the page content, every other field
(``log_id``, ``external_id``, ``score``, ``similarity``, ``memory_type``, ``occurred_at``,
``created_at`` as ISO 8601, ``raw_data``) its metadata.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from memory_pipeline.search.result import SearchResult


def result_document(result: SearchResult) -> Document:
    """One search result as a LangChain ``Document``."""
    metadata = result.to_json()
    return Document(page_content=metadata.pop("text"), metadata=metadata)


class MemoryPipelineRetriever(BaseRetriever):
    """Searches one tenant's memories; ``memories`` is a ``MemoryStore`` or a ``MemoryClient``.

    With a tenant key's ``MemoryClient``, ``user_id`` and ``project_id`` may stay ``None``.
    ``search_options`` go to ``search_similar_memories`` as they are (``mode``,
    ``where_filter``, ``min_similarity``, ...); the product checks them.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memories: Any
    user_id: str | None = None
    project_id: str | None = None
    limit: int = 10
    search_options: dict[str, Any] = Field(default_factory=dict)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        results = self.memories.search_similar_memories(
            query, self.user_id, self.project_id, self.limit, **self.search_options
        )
        return [result_document(r) for r in results]
