"""What ships: a wheel carries the migrations, and the code location loads without the model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_carries_sql_and_an_install_of_it_finds_the_migrations(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    for folder in ("memory_pipeline", "sql"):
        shutil.copytree(
            REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(dist), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("memory_pipeline-*.whl")
    migrations = sorted(p.name for p in (REPO_ROOT / "sql").glob("*.sql"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = sorted(
            n.removeprefix("memory_pipeline/sql/")
            for n in archive.namelist()
            if n.startswith("memory_pipeline/sql/")
        )
        assert shipped == migrations
        site = tmp_path / "site"
        archive.extractall(site)

    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from memory_pipeline.storage.migrations import discover_migrations\n"
            "for m in discover_migrations(): print(m.path)",
        ],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert [Path(p).name for p in found] == migrations
    assert all(Path(p).is_relative_to(site / "memory_pipeline" / "sql") for p in found)


def test_the_definitions_load_without_torch_or_the_model() -> None:
    """The code server and the sensor import the definitions; the model stays out of them."""
    heavy = ("torch", "sentence_transformers", "transformers", "chromadb")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, memory_pipeline.definitions\n"
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert loaded == []
