"""Deterministic synthetic coding-agent work logs (the DESIGN §2b shape) for benchmarks.

Every document is a function of ``(seed, index)`` alone, so any slice of a corpus is the same
whatever was generated before it, and two runs of a benchmark embed exactly the same texts.
Each log draws from a few hundred domain words (components, technologies, failure modes,
fixes), so texts differ the way real logs do, and its fields are filled until a word budget of
20–200 words is spent, the range of the seed's short-to-medium memories. About one in four
documents comes wrapped as the seed's API stored them (``{user_id, project_id, session_id,
datetime, memory_log: {...}}``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

MIN_WORDS = 20
MAX_WORDS = 200

# Vocabulary tables, kept dense on purpose.
# fmt: off
COMPONENTS = (
    "vector-search", "ingestion-worker", "auth-service", "billing-api", "event-bus",
    "memory-store", "query-planner", "embedding-cache", "rate-limiter", "scheduler",
    "webhook-gateway", "search-ranker", "tenant-router", "migration-runner", "metrics-exporter",
    "notification-service", "file-importer", "session-manager", "graphql-layer", "cli",
    "config-loader", "backup-job", "audit-log", "feature-flags", "payment-reconciler",
)
TECHNOLOGIES = (
    "PostgreSQL", "pgvector", "ChromaDB", "Redis", "Kafka", "FastAPI", "SQLAlchemy", "Alembic",
    "Dagster", "Celery", "Docker", "Kubernetes", "gRPC", "OpenTelemetry", "Prometheus",
    "sentence-transformers", "PyTorch", "pandas", "Parquet", "S3", "nginx", "asyncio",
    "pydantic", "psycopg", "HNSW", "JWT", "OAuth2", "WebSockets", "Terraform", "GitHub Actions",
)
VERBS = (
    "added", "refactored", "fixed", "replaced", "split", "batched", "cached", "indexed",
    "migrated", "isolated", "parallelised", "instrumented", "documented", "hardened",
    "simplified", "validated", "retried", "throttled", "streamed", "deduplicated",
)
OBJECTS = (
    "the connection pool", "the upsert path", "tenant filtering", "the retry loop",
    "schema migrations", "the embedding batcher", "cursor pagination", "the import parser",
    "the health check", "the token refresh", "error reporting", "the cache invalidation",
    "the query builder", "the background queue", "partition keys", "the bulk loader",
    "the similarity threshold", "date parsing", "the collection naming", "the test fixtures",
    "the CLI output", "idempotency keys", "the advisory lock", "the sensor tick",
)
SYMPTOMS = (
    "requests timed out under load", "duplicate rows appeared after a retry",
    "search returned another tenant's results", "memory grew without bound",
    "the worker deadlocked on startup", "latency doubled after the deploy",
    "rows stayed pending forever", "the migration failed halfway",
    "cold starts took over ten seconds", "unicode input crashed the parser",
    "the index was never used", "vectors drifted between the two stores",
    "the scheduler skipped runs", "tokens expired mid-request", "CSV imports lost rows",
    "the cache served stale data", "similarity scores were inverted",
)
CAUSES = (
    "a missing index on the tenant column", "an unbounded in-memory buffer",
    "a race between two writers", "the default batch size of one",
    "a global mutable singleton", "timezone-naive timestamps", "an N+1 query in the loop",
    "L2 distance treated as similarity", "a lock held across a network call",
    "retries without idempotency keys", "a filter applied after the limit",
    "the connection pool being too small", "an exception swallowed in a callback",
    "a cursor that skipped late commits", "string ids compared as integers",
)
FIXES = (
    "claim rows with FOR UPDATE SKIP LOCKED", "batch the writes into one COPY",
    "move the model load out of the import path", "add a partial index",
    "normalise timestamps to UTC at the boundary", "upsert by a stable id",
    "stream results instead of buffering them", "add exponential backoff with jitter",
    "filter by tenant inside the query", "convert distance to cosine similarity",
    "cache the compiled query plan", "split the job into tenant partitions",
    "record a tombstone on delete", "validate input at the API edge",
    "bound the queue and apply back-pressure", "use one pooled client per process",
)
LESSONS = (
    "Measure before optimising; the slow part was not where we guessed.",
    "Correctness must not depend on the scheduler's limits.",
    "Idempotent writes make retries boring, which is the goal.",
    "Keep heavy imports out of code paths that run on every tick.",
    "A test that uses the real database catches what mocks hide.",
    "Small batches hide overhead; large batches hide latency.",
    "Every query needs the tenant filter, even when the collection is per tenant.",
    "Log the ids a failure concerns, not just the message.",
    "Timestamps without a zone are bugs waiting for daylight saving.",
    "Prefer the ecosystem's bulk path over hand-written loops.",
)
CATEGORIES = ("performance", "correctness", "security", "operations", "testing", "design")
SEVERITIES = ("low", "medium", "high", "critical")
CONCEPTS = (
    "multi-tenancy", "semantic search", "eventual consistency", "idempotency", "back-pressure",
    "observability", "data lineage", "vector similarity", "partitioning", "hybrid retrieval",
    "temporal decay", "rate limiting", "schema evolution", "read-your-writes", "sharding",
)
PATTERNS = (
    "repository pattern", "outbox pattern", "circuit breaker", "dependency injection",
    "event sourcing", "batch processing", "retry with backoff", "claim-check",
    "strangler fig", "bulkhead", "write-ahead log", "two-phase write",
)
AGENTS = ("claude-sonnet-4.5", "claude-opus-4", "gpt-4.1", "codex", "gemini-2.5-pro")
FILE_DIRS = ("src/api", "src/services", "src/storage", "src/workers", "tests", "migrations")
FILE_STEMS = (
    "client", "repository", "routes", "models", "schemas", "worker", "settings", "pool",
    "cache", "search", "importer", "sensor", "assets", "conftest", "cli", "tenancy",
)
# fmt: on
FIRST_DAY = datetime(2024, 1, 1, tzinfo=UTC)


def _phrase(rng: random.Random) -> str:
    return f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} in {rng.choice(COMPONENTS)}"


def _summary(rng: random.Random, tech: str) -> str:
    return (
        f"{rng.choice(SYMPTOMS).capitalize()} → {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
        f"using {tech}."
    )


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for v in value.values())
    return 1


def work_log(index: int, seed: int = 0) -> dict[str, Any]:
    """The ``index``-th synthetic work log of corpus ``seed`` (the same every time).

    Required fields come first (task, agent, date, component, summary); then root cause,
    lesson, solution, gotchas, tags, contexts and planning are added, in order of a shuffled
    list, while the word budget lasts. Some documents come in the seed's wrapper.
    """
    rng = random.Random(f"memory_pipeline_bench:{seed}:{index}")
    budget = rng.randint(MIN_WORDS + 5, MAX_WORDS - 40)
    component = rng.choice(COMPONENTS)
    tech = rng.choice(TECHNOLOGIES)
    day = FIRST_DAY + timedelta(days=rng.randrange(730), minutes=rng.randrange(24 * 60))
    doc: dict[str, Any] = {
        "task": f"{rng.choice(VERBS)}-{rng.choice(OBJECTS).split()[-1]}-{component}-{index}",
        "agent": rng.choice(AGENTS),
        "date": day.date().isoformat(),
        "component": component,
        "summary": _summary(rng, tech),
    }
    optional: list[tuple[str, Any]] = [
        ("root_cause", f"{rng.choice(SYMPTOMS).capitalize()} because of {rng.choice(CAUSES)}."),
        ("lesson", rng.choice(LESSONS)),
        (
            "solution",
            {
                "approach": f"{rng.choice(FIXES).capitalize()} and {rng.choice(FIXES)}.",
                "key_changes": [_phrase(rng) for _ in range(rng.randint(1, 4))],
            },
        ),
        (
            "gotchas",
            [
                {
                    "issue": rng.choice(SYMPTOMS).capitalize(),
                    "solution": rng.choice(FIXES).capitalize(),
                    "category": rng.choice(CATEGORIES),
                    "severity": rng.choice(SEVERITIES),
                }
                for _ in range(rng.randint(1, 2))
            ],
        ),
        ("tags", rng.sample([*TECHNOLOGIES, *CONCEPTS], rng.randint(2, 6))),
        (
            "semantic_context",
            {
                "domain_concepts": rng.sample(CONCEPTS, rng.randint(1, 3)),
                "technical_patterns": rng.sample(PATTERNS, rng.randint(1, 2)),
            },
        ),
        (
            "code_context",
            {
                "key_patterns": [f"{rng.choice(PATTERNS)} around {rng.choice(OBJECTS)}"],
                "api_surface": [f"{rng.choice(FILE_STEMS)}.{rng.choice(VERBS)}_{index % 97}()"],
            },
        ),
        (
            "future_planning",
            {
                "next_logical_steps": [_phrase(rng) for _ in range(rng.randint(1, 2))],
                "architecture_decisions": {
                    rng.choice(PATTERNS).replace(" ", "_"): f"chosen to {rng.choice(FIXES)}"
                },
            },
        ),
        (
            "files_touched",
            [
                f"{rng.choice(FILE_DIRS)}/{rng.choice(FILE_STEMS)}.py"
                for _ in range(rng.randint(1, 4))
            ],
        ),
        ("outcomes", {"performance_impact": f"{rng.randint(2, 40)}x faster {rng.choice(OBJECTS)}"}),
    ]
    rng.shuffle(optional)
    used = _words(doc)
    for key, value in optional:
        cost = _words(value)
        if used + cost > budget and used >= MIN_WORDS:
            continue
        doc[key] = value
        used += cost
    if rng.random() < 0.25:
        return {
            "user_id": f"agent-user-{rng.randrange(100)}",
            "project_id": f"project-{rng.randrange(20)}",
            "session_id": f"session-{seed}-{index}",
            "datetime": day.isoformat(),
            "memory_log": doc,
        }
    return doc


def work_logs(count: int, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Work logs ``start`` … ``start + count - 1`` of corpus ``seed``."""
    for index in range(start, start + count):
        yield work_log(index, seed)


def search_query(index: int, seed: int = 0) -> str:
    """A short question a user might ask of these logs (distinct per index)."""
    rng = random.Random(f"memory_pipeline_bench:query:{seed}:{index}")
    forms = (
        lambda: f"how did we fix {rng.choice(SYMPTOMS)} in {rng.choice(COMPONENTS)}",
        lambda: f"{rng.choice(CAUSES)} {rng.choice(TECHNOLOGIES)}",
        lambda: f"why {rng.choice(SYMPTOMS)}",
        lambda: f"{rng.choice(PATTERNS)} for {rng.choice(CONCEPTS)} in {rng.choice(COMPONENTS)}",
        lambda: f"lesson about {rng.choice(OBJECTS)} and {rng.choice(TECHNOLOGIES)}",
    )
    return rng.choice(forms)()
