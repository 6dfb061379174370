"""Questions a user asks of the seed work logs (``shared/data/seed-memories/work_logs``).

Sixteen questions, one per distinct work log (two files share one task and either answers its
question), phrased as someone looking for that work would ask. ``hit@1`` (the first result is
an answer) guards the product's own kind of memory while ranking is tuned on conversations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_pipeline.tenancy import Tenant

#: The tenant ``make eval`` keeps the seed work logs in.
SEED_TENANT = Tenant("seed-memories", "work-logs")


@dataclass(frozen=True)
class SeedQuestion:
    question: str
    answers: tuple[str, ...]  # work-log file names


SEED_QUESTIONS: tuple[SeedQuestion, ...] = (
    SeedQuestion(
        "How did we first add semantic vector search next to PostgreSQL?",
        ("CHROMADB_IMPLEMENTATION_SUMMARY.json", "chromadb-semantic-search-integration.json"),
    ),
    SeedQuestion(
        "Which script processes memory JSON files from the delta folder and moves failures "
        "to an errors directory?",
        ("batch-memory-processing-nested-chromadb-structure.json",),
    ),
    SeedQuestion(
        "In what order must the database be created and Alembic migrations run on a fresh install?",
        ("database-migration-and-chromadb-optimization.json",),
    ),
    SeedQuestion(
        "How was the EmbeddingCache class split into TTL, eviction and metrics components?",
        ("embedding-cache-component-extraction-refactoring.json",),
    ),
    SeedQuestion(
        "Why update the embeddings package exports first when restructuring it into submodules?",
        ("embeddings-module-single-responsibility-refactoring.json",),
    ),
    SeedQuestion(
        "How did creating a memory log go from a 500-1000 ms blocking request to 50-100 ms?",
        ("event-driven-memory-storage-architecture.json",),
    ),
    SeedQuestion(
        "What were the three cascading errors that broke ChromaDB queries?",
        ("fix-chromadb-query-errors.json",),
    ),
    SeedQuestion(
        "Why use reciprocal rank fusion instead of weighted averaging in hybrid search?",
        ("implement-advanced-memory-embedding-hybrid-search.json",),
    ),
    SeedQuestion(
        "How did we move from one shared ChromaDB client to a database per user and project?",
        ("per-project-chromadb-isolation.json",),
    ),
    SeedQuestion(
        "Which refactor split the ChromaDB client into configuration, naming strategy and "
        "collection operation modules?",
        ("refactor-chromadb-vector-storage-modules.json",),
    ),
    SeedQuestion(
        "How was the memory CRUD and transformation module reorganised by data flow?",
        ("refactor-memory-operations.json",),
    ),
    SeedQuestion(
        "How was the XCP server service broken up into components?",
        ("refactor-xcp-server-service.json",),
    ),
    SeedQuestion(
        "Why were gotchas and lessons not found by semantic search before they were vectorized?",
        ("semantic-search-gotchas-enhancement.json",),
    ),
    SeedQuestion(
        "Which work added the Google embedding provider with LRU caching and retries?",
        ("semantix-bridge-embedding-module-implementation.json",),
    ),
    SeedQuestion(
        "Where did we write test memory logs to validate the selective embedding strategy?",
        ("testing-memories.json",),
    ),
    SeedQuestion(
        "How were vector_storage_service.py and provider.py split into smaller modules?",
        ("vector-storage-and-embedding-provider-refactoring.json",),
    ),
)


def find_work_logs(start: Path | None = None) -> Path | None:
    """The ``shared/data/seed-memories/work_logs`` folder above ``start`` (or the cwd, or
    this package), if any."""
    places = [start or Path.cwd(), Path(__file__).resolve()]
    for here in places:
        for folder in (here, *here.parents):
            candidate = folder / "shared" / "data" / "seed-memories" / "work_logs"
            if candidate.is_dir():
                return candidate
    return None


def import_work_logs(store: Any, user_id: str, project_id: str, folder: Path) -> int:
    """Write every work log of ``folder`` as a memory (external id: its file name); process."""
    import json

    files = sorted(folder.glob("*.json"))
    for path in files:
        store.create_memory_log(
            user_id,
            project_id,
            json.loads(path.read_text(encoding="utf-8")),
            external_id=path.name,
        )
    store.process_pending(user_id, project_id)
    return len(files)


def hits_at_1(search: Any, user_id: str, project_id: str, **options: Any) -> list[bool]:
    """Per question, whether the first result answers it (``search.search_many``)."""
    questions: Sequence[SeedQuestion] = SEED_QUESTIONS
    results = search.search_many([q.question for q in questions], user_id, project_id, 1, **options)
    return [
        bool(found) and found[0].external_id in q.answers
        for q, found in zip(questions, results, strict=True)
    ]
