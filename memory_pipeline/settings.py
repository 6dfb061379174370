"""Settings: the one place that reads the environment (DESIGN §5, Configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of {', '.join(_TRUE + _FALSE)}; got {raw!r}")


def _env_str(name: str) -> str | None:
    raw = os.environ.get(name)
    return raw if raw else None


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one memory_pipeline home.

    Build it with :meth:`from_env`; every process (CLI, Dagster code server, runs, notebooks)
    reads the same variables, so they all agree on the database, Chroma server and model.
    """

    home: Path
    database_url: str | None = None
    chroma_host: str | None = None
    chroma_port: int = 8000
    chroma_token: str | None = field(default=None, repr=False)
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_batch_size: int = 32
    embedding_precision: str = "auto"
    query_trace: bool = True
    import_dir: Path | None = None
    import_cron: str = "0 * * * *"
    drift_check_cron: str = "0 3 * * *"
    max_attempts: int = 5
    retry_backoff_seconds: float = 30.0
    max_document_bytes: int = 1024 * 1024
    sensor_interval_seconds: int = 5
    dagster_home: Path | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Read the ``MEMORY_PIPELINE_*`` variables (and ``DAGSTER_HOME``), with DESIGN defaults."""
        home = Path(os.environ.get("MEMORY_PIPELINE_HOME") or "./.memory_pipeline").resolve()
        import_dir = _env_str("MEMORY_PIPELINE_IMPORT_DIR")
        dagster_home = _env_str("DAGSTER_HOME")
        settings = cls(
            home=home,
            database_url=_env_str("MEMORY_PIPELINE_DATABASE_URL"),
            chroma_host=_env_str("MEMORY_PIPELINE_CHROMA_HOST"),
            chroma_port=_env_int("MEMORY_PIPELINE_CHROMA_PORT", 8000),
            chroma_token=_env_str("MEMORY_PIPELINE_CHROMA_TOKEN"),
            embedding_model=_env_str("MEMORY_PIPELINE_EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL,
            embedding_batch_size=_env_int("MEMORY_PIPELINE_EMBEDDING_BATCH_SIZE", 32),
            embedding_precision=_env_str("MEMORY_PIPELINE_EMBEDDING_PRECISION") or "auto",
            query_trace=_env_bool("MEMORY_PIPELINE_QUERY_TRACE", True),
            import_dir=Path(import_dir).resolve() if import_dir else None,
            import_cron=_env_str("MEMORY_PIPELINE_IMPORT_CRON") or "0 * * * *",
            drift_check_cron=_env_str("MEMORY_PIPELINE_DRIFT_CHECK_CRON") or "0 3 * * *",
            max_attempts=_env_int("MEMORY_PIPELINE_MAX_ATTEMPTS", 5),
            retry_backoff_seconds=_env_float("MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS", 30.0),
            max_document_bytes=_env_int("MEMORY_PIPELINE_MAX_DOCUMENT_BYTES", 1024 * 1024),
            sensor_interval_seconds=_env_int("MEMORY_PIPELINE_SENSOR_INTERVAL_SECONDS", 5),
            dagster_home=Path(dagster_home).resolve() if dagster_home else None,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line message for a setting out of range."""
        if self.embedding_batch_size < 1:
            raise ValueError("MEMORY_PIPELINE_EMBEDDING_BATCH_SIZE must be at least 1")
        if self.embedding_precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(
                "MEMORY_PIPELINE_EMBEDDING_PRECISION must be auto, float32 or bfloat16"
            )
        if self.max_attempts < 1:
            raise ValueError("MEMORY_PIPELINE_MAX_ATTEMPTS must be at least 1")
        if self.retry_backoff_seconds < 0:
            raise ValueError("MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS must not be negative")
        if self.max_document_bytes < 2:
            raise ValueError("MEMORY_PIPELINE_MAX_DOCUMENT_BYTES must be at least 2")
        if self.sensor_interval_seconds < 1:
            raise ValueError("MEMORY_PIPELINE_SENSOR_INTERVAL_SECONDS must be at least 1")

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced (tests, notebooks)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def resolved_import_dir(self) -> Path:
        return self.import_dir or self.home / "imports"

    @property
    def resolved_dagster_home(self) -> Path:
        return self.dagster_home or self.home / "dagster"

    @property
    def rejects_dir(self) -> Path:
        return self.home / "rejects"

    @property
    def postgres_data_dir(self) -> Path:
        return self.home / "pg"

    @property
    def chroma_data_dir(self) -> Path:
        return self.home / "chroma"
