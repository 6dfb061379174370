"""Session fixtures: a real embedded PostgreSQL + pgvector, a real Chroma server, the real model.

Everything runs under one temporary ``MEMORY_PIPELINE_HOME`` (short, for the Unix socket path
limit); tests isolate themselves with their own tenants (``new_tenant``), not by truncating.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memory_pipeline.embedding import Embedder, load_embedder
from memory_pipeline.local_services import ServiceEndpoints, ensure_services, stop_services
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.settings import DEFAULT_EMBEDDING_MODEL, Settings
from memory_pipeline.storage.migrations import apply_migrations
from memory_pipeline.tenancy import Tenant

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def test_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="mpt-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(test_home: Path) -> Settings:
    """Settings of the test home; no external servers, fast retries."""
    return Settings(
        home=test_home,
        embedding_model=DEFAULT_EMBEDDING_MODEL,
        retry_backoff_seconds=0.0,
        max_attempts=3,
    )


@pytest.fixture(scope="session")
def endpoints(settings: Settings) -> Iterator[ServiceEndpoints]:
    """The home's real PostgreSQL and Chroma servers, migrated; stopped at the end."""
    eps = ensure_services(settings)
    apply_migrations(eps.database_url)
    yield eps
    stop_services(settings)


@pytest.fixture(scope="session")
def database_url(endpoints: ServiceEndpoints) -> str:
    return endpoints.database_url


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return load_embedder(DEFAULT_EMBEDDING_MODEL, batch_size=32)


@pytest.fixture(scope="session")
def store(
    settings: Settings, endpoints: ServiceEndpoints, embedder: Embedder
) -> Iterator[MemoryStore]:
    with MemoryStore(settings, endpoints, embedder=embedder) as memory_store:
        memory_store.ensure_model_index()
        yield memory_store


@pytest.fixture(scope="session")
def home_env(test_home: Path, endpoints: ServiceEndpoints) -> Iterator[dict[str, str]]:
    """Environment for subprocesses and env-reading code (CLI, Dagster resources) of the test home."""
    env = {
        **os.environ,
        "MEMORY_PIPELINE_HOME": str(test_home),
        "MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS": "0",
        "MEMORY_PIPELINE_MAX_ATTEMPTS": "3",
    }
    env.pop("MEMORY_PIPELINE_DATABASE_URL", None)
    env.pop("MEMORY_PIPELINE_CHROMA_HOST", None)
    yield env


@pytest.fixture
def new_tenant() -> Callable[..., Tenant]:
    """Make a fresh tenant no other test uses."""

    def make(prefix: str = "user", project: str | None = None) -> Tenant:
        suffix = uuid.uuid4().hex[:10]
        return Tenant(f"{prefix}-{suffix}", project or f"project-{suffix}")

    return make


@pytest.fixture
def instance():
    """An ephemeral Dagster instance (in-memory run and partition storage)."""
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def resources(database_url, endpoints, embedder, test_home, monkeypatch) -> dict[str, object]:
    """The real Dagster resources of the test home (settings read from its environment)."""
    from memory_pipeline.defs.resources import ChromaResource, EmbedderResource, PostgresResource

    monkeypatch.setenv("MEMORY_PIPELINE_HOME", str(test_home))
    return {
        "postgres": PostgresResource(database_url=database_url),
        "chroma": ChromaResource(host=endpoints.chroma_host, port=endpoints.chroma_port),
        "embedder": EmbedderResource(model_name=embedder.model_id),
    }


@pytest.fixture(scope="session")
def service(home_env: dict[str, str], test_home: Path):
    """A real ``memory-pipeline serve`` of the test home (HTTP + MCP), ready; it logs to a file."""
    from memory_pipeline_tests.service_support import running_serve

    with running_serve(home_env, test_home / "service.log") as running:
        yield running


@pytest.fixture(scope="session")
def embedding_worker(store: MemoryStore):
    """Embeds what the service stores for the tenants it is told to watch (the sensor's job)."""
    from memory_pipeline_tests.service_support import EmbeddingWorker

    with EmbeddingWorker(store) as worker:
        yield worker
    assert not worker.errors, worker.errors


#: Shards of the sharded test home: few, so that tenants share them.
TEST_SHARDS = 4


@pytest.fixture(scope="session")
def sharded_home(embedder: Embedder) -> Iterator[MemoryStore]:
    """A second home, sharded from its first tenant (``TEST_SHARDS`` shards), with its own
    PostgreSQL and Chroma servers (docs/decisions/0203)."""
    home = Path(tempfile.mkdtemp(prefix="mps-", dir="/tmp"))
    settings = Settings(
        home=home,
        embedding_model=DEFAULT_EMBEDDING_MODEL,
        retry_backoff_seconds=0.0,
        max_attempts=3,
        shard_after_tenants=0,
        tenant_shards=TEST_SHARDS,
    )
    eps = ensure_services(settings)
    apply_migrations(eps.database_url)
    try:
        with MemoryStore(settings, eps, embedder=embedder) as memory_store:
            memory_store.ensure_model_index()
            memory_store.tenant_layout()  # sharded before any tenant exists
            yield memory_store
    finally:
        stop_services(settings)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def sharded_service(sharded_home: MemoryStore, home_env: dict[str, str]):
    """A real ``memory-pipeline serve`` of the sharded home."""
    from memory_pipeline_tests.service_support import running_serve

    home = sharded_home.settings.home
    env = {
        **home_env,
        "MEMORY_PIPELINE_HOME": str(home),
        "MEMORY_PIPELINE_SHARD_AFTER_TENANTS": "0",
        "MEMORY_PIPELINE_TENANT_SHARDS": str(TEST_SHARDS),
    }
    with running_serve(env, home / "service.log") as running:
        yield running


@pytest.fixture(params=["per-tenant", "sharded"])
def any_home(request) -> MemoryStore:
    """The test home (a collection and a partition per tenant), then the sharded home."""
    return request.getfixturevalue("store" if request.param == "per-tenant" else "sharded_home")


@pytest.fixture(params=["per-tenant", "sharded"])
def any_service(request):
    """``(service, store)`` of the test home, then of the sharded home."""
    if request.param == "per-tenant":
        return request.getfixturevalue("service"), request.getfixturevalue("store")
    return request.getfixturevalue("sharded_service"), request.getfixturevalue("sharded_home")
