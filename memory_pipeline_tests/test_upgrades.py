"""Homes made by older commits of this product, opened and migrated by today's code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from memory_pipeline.local_services import ensure_services, stop_services
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.service import keys
from memory_pipeline.settings import Settings
from memory_pipeline.tenancy import Tenant

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Older schemas: before the API keys' migration 009 (001-007), and the first schema (001-004).
OLD_COMMITS = {"before-api-keys": "d8e2fdd^", "first-schema": "3e8772b^"}
TENANTS = [Tenant("alice", "notes"), Tenant("bob", "work")]
TEXTS = ["the offsite is in Lisbon in May", "the database migration plan is ready"]


def _old_cli(tree: Path, home: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "MEMORY_PIPELINE_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "memory_pipeline.cli", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(params=sorted(OLD_COMMITS))
def old_home(request):
    """A home written by the old commit's own code (a git worktree of it, today's venv)."""
    root = Path(tempfile.mkdtemp(prefix="mpu-", dir="/tmp"))
    tree, home = root / "tree", root / "home"
    home.mkdir()
    commit = OLD_COMMITS[request.param]
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), commit],
        check=True,
        capture_output=True,
    )
    try:
        for tenant, text in zip(TENANTS, TEXTS, strict=True):
            for i in range(3):
                data = json.dumps({"content": f"{text} ({i})"})
                _old_cli(tree, home, "add", "--user", tenant.user_id, "--project",
                         tenant.project_id, "--data", data)  # fmt: skip
        _old_cli(tree, home, "process")
        old_status = json.loads(_old_cli(tree, home, "status", "--json"))
        _old_cli(tree, home, "db", "stop")
        yield home, old_status
    finally:
        stop_services(Settings(home=home))
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(root, ignore_errors=True)


def test_an_older_home_migrates_and_keeps_and_serves_its_memories(old_home, embedder):
    home, old_status = old_home
    settings = Settings(home=home, embedding_model=embedder.model_id)
    with MemoryStore(settings, ensure_services(settings), embedder=embedder) as store:
        assert store.status() == old_status
        with store.db.connection() as conn:
            vectors = conn.execute("SELECT count(*) AS n FROM memory_vector").fetchone()["n"]
        assert vectors == old_status["totals"]["embedded"] == 6
        for tenant, text in zip(TENANTS, TEXTS, strict=True):
            hits = store.search_similar_memories(text, tenant.user_id, tenant.project_id, 10)
            assert len(hits) == 3 and all(text in h.text for h in hits)
        key = keys.create_key(store.db, TENANTS[0], "after upgrade")
        assert keys.authenticate(store.db, key.key).tenant == TENANTS[0]
