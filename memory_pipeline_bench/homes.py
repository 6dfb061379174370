"""Where benchmarks keep their state: one fresh sub-home per benchmark under the bench home.

The bench home is ``MEMORY_PIPELINE_HOME`` when set, else ``.memory_pipeline/bench``. Each
benchmark gets ``<bench home>/<name>`` with its own PostgreSQL and Chroma servers, so a
benchmark never sees another's rows, and it starts empty: a sub-home left by an earlier run is
stopped and removed first — but only if it carries the bench's marker file, so a folder the
bench did not create is never deleted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from memory_pipeline.local_services import stop_services
from memory_pipeline.settings import Settings

DEFAULT_BENCH_HOME = ".memory_pipeline/bench"
MARKER = ".memory_pipeline_bench"


def bench_home() -> Path:
    """The bench home (``MEMORY_PIPELINE_HOME`` or ``.memory_pipeline/bench``), absolute."""
    return Path(os.environ.get("MEMORY_PIPELINE_HOME") or DEFAULT_BENCH_HOME).resolve()


def section_settings(home: Path) -> Settings:
    """The environment's settings, with ``home`` as the home (and Dagster's home below it)."""
    return Settings.from_env().with_overrides(home=home, dagster_home=None, import_dir=None)


def fresh_section_home(base: Path, name: str) -> Path:
    """An empty sub-home ``base/name`` for one benchmark, with the bench's marker in it.

    Raises ``RuntimeError`` if the folder exists but was not made by the bench.
    """
    home = base / name
    if home.exists():
        if not (home / MARKER).exists():
            raise RuntimeError(
                f"{home} exists and was not created by the benchmark; "
                "set MEMORY_PIPELINE_HOME to another folder"
            )
        stop_section_services(home)
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("created by memory_pipeline_bench; removed by its next run\n")
    return home


def stop_section_services(home: Path) -> None:
    """Stop the local PostgreSQL and Chroma servers of a benchmark's sub-home, if running."""
    stop_services(section_settings(home).with_overrides(database_url=None, chroma_host=None))
