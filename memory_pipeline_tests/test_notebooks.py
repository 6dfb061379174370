"""The notebooks run top to bottom against the test database (a failing cell fails the test)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["01_search.ipynb", "02_analysis.ipynb"])
def test_notebook_runs_against_the_test_database(
    name: str, home_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel is a subprocess: it inherits this environment and finds the test home's
    # running services through MemoryStore.from_env().
    for key in (
        "MEMORY_PIPELINE_HOME",
        "MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS",
        "MEMORY_PIPELINE_MAX_ATTEMPTS",
    ):
        monkeypatch.setenv(key, home_env[key])
    monkeypatch.delenv("MEMORY_PIPELINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEMORY_PIPELINE_CHROMA_HOST", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # "python3" resolves to this interpreter (the venv's), not a global one.
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
