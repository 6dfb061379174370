"""The home's own Chroma server: its collection cache never serves stale data, its log stays
quiet per request, and it starts where the ``chroma`` script is not installed.

Each test starts a private server (``start_local_chroma``) so it can read that server's log.
"""

from __future__ import annotations

import json
import os
import site
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from memory_pipeline.local_services.local_chroma import (
    COLLECTION_CACHE_ENTRIES,
    running_local_chroma,
    start_local_chroma,
    stop_local_chroma,
)
from memory_pipeline.tenancy import Tenant
from memory_pipeline.vector_store import ChromaVectorStore, connect_chroma, vector_id
from memory_pipeline.vector_store.chroma import vector_metadata

MODEL = "test-model"
DIM = 8
TENANT = Tenant("cache-user", "cache-project")


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _upsert(store: ChromaVectorStore, log_ids: list[int], rng: np.random.Generator) -> np.ndarray:
    """Store a random unit vector for each of ``log_ids``; return the vectors."""
    vectors = _unit(rng, len(log_ids))
    when = datetime(2025, 1, 1, tzinfo=UTC)
    store.upsert_vectors(
        TENANT,
        MODEL,
        [vector_id(i, 0) for i in log_ids],
        vectors,
        [vector_metadata(TENANT, MODEL, i, 0, "note", when) for i in log_ids],
    )
    return vectors


def _found(store: ChromaVectorStore, query: np.ndarray, n: int = 10) -> set[int]:
    hits = store.query(TENANT, MODEL, query[None, :], n, with_metadata=False)
    return set() if hits is None else {h.log_id for h in hits[0]}


@contextmanager
def _private_server(data_dir: Path) -> Iterator[tuple[ChromaVectorStore, Path]]:
    """A server of its own on ``data_dir``: its vector store and its log file."""
    info = start_local_chroma(data_dir)
    try:
        yield ChromaVectorStore(connect_chroma(info.host, info.port)), data_dir / "server.log"
    finally:
        stop_local_chroma(data_dir)


@pytest.fixture
def verbose_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ChromaVectorStore, Path]]:
    """A private server that logs at info, the level at which Chroma reports cache misses."""
    monkeypatch.setenv("RUST_LOG", "info")
    with _private_server(tmp_path / "chroma") as server:
        yield server


@pytest.fixture
def default_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ChromaVectorStore, Path]]:
    monkeypatch.delenv("RUST_LOG", raising=False)
    with _private_server(tmp_path / "chroma") as server:
        yield server


def test_the_server_runs_from_its_written_config_with_the_collection_cache_on(
    default_server: tuple[ChromaVectorStore, Path],
) -> None:
    _, log_path = default_server
    config = json.loads((log_path.parent / "server.yaml").read_text())
    assert config["persist_path"] == str(log_path.parent / "data")
    cache = config["collections_with_segments_provider"]["cache"]
    assert cache == {"lru": {"capacity": COLLECTION_CACHE_ENTRIES}}


def test_repeated_queries_read_the_collection_from_the_cache(
    verbose_server: tuple[ChromaVectorStore, Path],
) -> None:
    store, log_path = verbose_server
    rng = np.random.default_rng(1)
    _upsert(store, list(range(1, 21)), rng)
    collection_id = str(store.existing_collection(TENANT).id)
    queries = _unit(rng, 12)
    for q in queries:
        assert _found(store, q)
    misses = log_path.read_text().count(f"Cache miss for collection {collection_id}")
    # Chroma's single-node default (no cache) misses on every request: 12 queries alone.
    assert 1 <= misses <= 3, misses


def test_a_cached_collection_still_answers_with_every_change(
    verbose_server: tuple[ChromaVectorStore, Path],
) -> None:
    store, _ = verbose_server
    rng = np.random.default_rng(2)
    first = _upsert(store, list(range(1, 11)), rng)
    assert _found(store, first[0], 20) == set(range(1, 11))  # the collection is now cached

    added = _upsert(store, list(range(11, 16)), rng)
    assert 11 in _found(store, added[0], 1)
    assert _found(store, added[0], 20) == set(range(1, 16))

    store.delete_memories(TENANT, [1, 2, 3])
    assert _found(store, first[0], 20) == set(range(4, 16))

    # dropped and made again under the same name: only the new collection's vectors
    assert store.drop_collection(TENANT)
    assert _found(store, first[0], 20) == set()
    again = _upsert(store, [101, 102, 103], rng)
    assert _found(store, again[0], 20) == {101, 102, 103}


def test_the_server_log_does_not_grow_with_each_request(
    default_server: tuple[ChromaVectorStore, Path],
) -> None:
    store, log_path = default_server
    rng = np.random.default_rng(3)
    _upsert(store, list(range(1, 6)), rng)
    _found(store, _unit(rng, 1)[0])
    before = log_path.stat().st_size
    for q in _unit(rng, 50):
        assert _found(store, q)
    # `chroma run`'s own default writes ~2.5 kB per request (125 kB here)
    assert log_path.stat().st_size - before < 1000


def test_the_server_starts_where_the_chroma_script_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interpreter with no ``chroma`` script beside it, chromadb importable from elsewhere."""
    bare_bin = tmp_path / "bin"
    bare_bin.mkdir()
    python = bare_bin / "python"
    python.symlink_to(Path(sys.executable).resolve())  # the base interpreter, outside the venv
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(site.getsitepackages()))
    data_dir = tmp_path / "chroma"
    with _private_server(data_dir) as (store, _):
        info = running_local_chroma(data_dir)
        assert info is not None
        command = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
        assert command[:2] == [str(python).encode(), b"-c"]
        rng = np.random.default_rng(4)
        _upsert(store, [1, 2, 3], rng)
        assert _found(store, _unit(rng, 1)[0]) == {1, 2, 3}


def test_a_killed_server_starts_again_on_its_old_port(tmp_path) -> None:
    import os
    import signal

    import psutil

    from memory_pipeline.local_services.local_chroma import (
        running_local_chroma,
        start_local_chroma,
        stop_local_chroma,
    )

    data_dir = tmp_path / "chroma"
    first = start_local_chroma(data_dir)
    try:
        os.killpg(first.pid, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(first.pid)], timeout=30)
        assert running_local_chroma(data_dir) is None

        again = start_local_chroma(data_dir)

        assert (again.host, again.port) == (first.host, first.port)
        assert again.pid != first.pid
    finally:
        stop_local_chroma(data_dir)
