"""Settings: one typed object read from the environment and ``.env`` (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory_pipeline.settings import EMBEDDING_PRECISIONS, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MEMORY_PIPELINE_* variable set, working directory an empty folder."""
    import os

    for name in list(os.environ):
        if name.startswith("MEMORY_PIPELINE_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_are_the_designs(clean_env: Path) -> None:
    s = Settings.from_env()
    assert s.home == clean_env / ".memory_pipeline"
    assert (s.database_url, s.chroma_host, s.chroma_port) == (None, None, 8000)
    assert s.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert (s.embedding_batch_size, s.embedding_precision, s.query_trace) == (32, "auto", True)
    assert (s.import_cron, s.drift_check_cron) == ("0 * * * *", "0 3 * * *")
    assert (s.max_attempts, s.retry_backoff_seconds) == (5, 30.0)
    assert (s.max_document_bytes, s.sensor_interval_seconds) == (1024 * 1024, 5)
    assert s.resolved_import_dir == s.home / "imports"
    assert s.resolved_dagster_home == s.home / "dagster"


def test_a_dotenv_file_is_read_and_the_environment_wins_over_it(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text(
        "MEMORY_PIPELINE_EMBEDDING_BATCH_SIZE=7\nMEMORY_PIPELINE_MAX_ATTEMPTS=2\n"
        "DAGSTER_HOME=dagster-here\nSOMETHING_ELSE=ignored\n"
    )
    monkeypatch.setenv("MEMORY_PIPELINE_MAX_ATTEMPTS", "9")
    s = Settings.from_env()
    assert (s.embedding_batch_size, s.max_attempts) == (7, 9)
    assert s.resolved_dagster_home == clean_env / "dagster-here"


def test_an_empty_variable_means_its_default(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORY_PIPELINE_CHROMA_HOST", "")
    monkeypatch.setenv("MEMORY_PIPELINE_CHROMA_PORT", "")
    assert (Settings.from_env().chroma_host, Settings.from_env().chroma_port) == (None, 8000)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MEMORY_PIPELINE_CHROMA_PORT", "eighty", "must be an integer, got 'eighty'"),
        ("MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS", "soon", "must be a number, got 'soon'"),
        ("MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS", "-1", "must not be negative"),
        ("MEMORY_PIPELINE_EMBEDDING_BATCH_SIZE", "0", "must be at least 1"),
        ("MEMORY_PIPELINE_EMBEDDING_PRECISION", "half", "must be auto, float32 or bfloat16"),
        ("MEMORY_PIPELINE_QUERY_TRACE", "sometimes", "must be one of 1, true, yes, on"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as info:
        Settings.from_env()
    assert str(info.value).startswith(f"{variable} {message}")
    assert "\n" not in str(info.value)


def test_explicit_settings_ignore_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORY_PIPELINE_DATABASE_URL", "postgresql://elsewhere/db")
    assert Settings(home=clean_env).database_url is None


def test_overrides_are_checked_like_the_environment(clean_env: Path) -> None:
    s = Settings.from_env()
    assert s.with_overrides(max_attempts=2).max_attempts == 2
    with pytest.raises(ValueError, match="^MEMORY_PIPELINE_MAX_ATTEMPTS must be at least 1$"):
        s.with_overrides(max_attempts=0)


def test_a_child_process_environment_reproduces_the_settings(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("MEMORY_PIPELINE_QUERY_TRACE=off\n")
    parent = Settings.from_env().with_overrides(chroma_token="secret", embedding_batch_size=8)
    monkeypatch.chdir(clean_env.parent)  # a child in another folder sees no .env
    for name, value in parent.environment().items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env() == parent


def test_secrets_stay_out_of_the_repr() -> None:
    s = Settings(home=Path("/tmp/x"), database_url="postgresql://u:pw@h/db", chroma_token="tok")
    assert "pw" not in repr(s) and "tok" not in repr(s)


def test_precision_names_have_one_source() -> None:
    from memory_pipeline.embedding.embedder import PRECISIONS

    assert PRECISIONS == EMBEDDING_PRECISIONS == ("auto", "float32", "bfloat16")


def test_the_readme_documents_every_setting() -> None:
    import re

    from memory_pipeline.settings import env_name

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.M))
    assert {env_name(field) for field in Settings.model_fields} <= documented
