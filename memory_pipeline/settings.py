"""Settings: the one place that reads the environment (DESIGN §5, Configuration).

Every variable is ``MEMORY_PIPELINE_<FIELD>`` (plus Dagster's own ``DAGSTER_HOME``), read from
the environment or from a ``.env`` file in the working directory, the environment winning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Final, Literal, get_args

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX: Final = "MEMORY_PIPELINE_"
DEFAULT_EMBEDDING_MODEL: Final = "sentence-transformers/all-MiniLM-L6-v2"
#: The ``auto`` search backend scans tenants with at most this many chunk vectors exactly in
#: Postgres, Chroma beyond (the measurement is in docs/decisions/0204).
EXACT_SEARCH_MAX_VECTORS: Final = 500
#: How the embedding model computes: ``auto`` picks bfloat16 where the CPU multiplies it natively.
EmbeddingPrecision = Literal["auto", "float32", "bfloat16"]
EMBEDDING_PRECISIONS: Final[tuple[str, ...]] = get_args(EmbeddingPrecision)
#: What runs the embedding model (memory_pipeline.embedding.backends); part of the model id.
EmbeddingBackend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
EMBEDDING_BACKENDS: Final[tuple[str, ...]] = get_args(EmbeddingBackend)
#: The Dagster executor of the code location's jobs (memory_pipeline.defs.executors).
Executor = Literal["in_process", "multiprocess", "celery"]
EXECUTORS: Final[tuple[str, ...]] = get_args(Executor)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return "DAGSTER_HOME" if field.lower() == "dagster_home" else ENV_PREFIX + field.upper()


class Settings(BaseSettings):
    """Everything configurable about one memory_pipeline home.

    Build it with :meth:`from_env`; every process (CLI, Dagster code server, runs, notebooks)
    reads the same variables, so they all agree on the database, Chroma server and model.
    ``Settings(home=...)`` takes only the values given (tests, tools), never the environment.
    A bad value raises ``ValueError`` with one line naming the variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # an empty variable means its default, as it always has
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    #: Whether construction reads the environment; only through :meth:`from_env`.
    reads_environment: ClassVar[bool] = False

    home: Path = Path("./.memory_pipeline")
    database_url: str | None = Field(default=None, repr=False)
    chroma_host: str | None = None
    chroma_port: int = 8000
    chroma_token: str | None = Field(default=None, repr=False)
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_batch_size: int = Field(default=32, ge=1)
    embedding_precision: EmbeddingPrecision = "auto"
    embedding_backend: EmbeddingBackend = "torch"
    query_trace: bool = True
    #: A vector per sentence of short multi-sentence texts too (docs/decisions/0205); part of
    #: the model id, so a change re-embeds each tenant aside like a model change.
    sentence_vectors: bool = False
    #: Where models reassembled from wheels (all-mpnet-base-v2) live; shared by every home.
    model_cache_dir: Path | None = None
    #: The second stage's model (docs/decisions/0153); unset = no second stage.
    rerank_model: str | None = None
    #: How many first-stage results the second stage re-scores, and its share of the fused score
    #: (chosen leave-one-out by make eval, docs/search.md).
    rerank_depth: int = Field(default=100, ge=1)
    rerank_weight: float = Field(default=0.2, ge=0, le=1)
    import_dir: Path | None = None
    import_cron: str = "0 * * * *"
    drift_check_cron: str = "0 3 * * *"
    max_attempts: int = Field(default=5, ge=1)
    retry_backoff_seconds: float = Field(default=30.0, ge=0)
    max_document_bytes: int = Field(default=1024 * 1024, ge=2)
    sensor_interval_seconds: int = Field(default=5, ge=1)
    #: Delay before the sensor requests unfinished work again, doubling per attempt (max 10 min).
    run_retry_backoff_seconds: float = Field(default=10.0, ge=0)
    #: A pipeline run still going after this long is ended by Dagster's run monitoring and its
    #: work retried (a store that hangs instead of failing); 0 leaves runs unbounded.
    run_max_runtime_seconds: float = Field(default=3600.0, ge=0)
    dagster_home: Path | None = Field(
        default=None, validation_alias=AliasChoices("dagster_home", "DAGSTER_HOME")
    )
    # Scale-out (docs/deployment.md): the engine of the steps, and how work is cut into runs.
    executor: Executor = "in_process"
    celery_broker_url: str | None = Field(default=None, repr=False)
    celery_backend_url: str | None = Field(default=None, repr=False)
    #: seconds before a step whose worker vanished goes back to the queue (Redis)
    celery_visibility_timeout: int = Field(default=3600, ge=1)
    max_rows_per_run: int = Field(default=10_000, ge=1)
    max_tenants_per_run: int = Field(default=1_000, ge=1)
    backfill_tenants_per_run: int | None = Field(default=None, ge=1)
    # Tenant shards (docs/decisions/0203): past this many tenants the home is sharded, once.
    shard_after_tenants: int = Field(default=2_000, ge=0)
    tenant_shards: int = Field(default=1_024, ge=1, le=65_536)
    #: 0 sends every ``auto`` search to Chroma.
    exact_search_max_vectors: int = Field(default=EXACT_SEARCH_MAX_VECTORS, ge=0)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ValueError(_one_line(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if cls.reads_environment:  # the environment first, then .env
            return (init_settings, env_settings, dotenv_settings)
        return (init_settings,)

    @classmethod
    def from_env(cls) -> Settings:
        """Read the ``MEMORY_PIPELINE_*`` variables (and ``DAGSTER_HOME``), with DESIGN defaults."""
        return cls(**_FromEnvironment().model_dump())

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests, notebooks, benches)."""
        return type(self)(**{**self.model_dump(), **changes})

    def environment(self) -> dict[str, str]:
        """These settings as environment variables, for a child process to read the same ones."""
        return {
            env_name(name): _env_text(value)
            for name, value in self.model_dump().items()
            if value is not None
        }

    @field_validator("home", "import_dir", "dagster_home", "model_cache_dir")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        # Processes of one home run in other working directories (dagster dev runs in the home).
        return path.resolve() if path is not None else None

    @field_validator("query_trace", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise ValueError(f"must be one of {', '.join(_TRUE + _FALSE)}; got {value!r}")
        return value

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
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or Path.home() / ".cache" / "memory_pipeline" / "models"

    @property
    def models_dir(self) -> Path:
        """Where non-torch embedding backends keep their exports of a model."""
        return self.home / "models"

    @property
    def postgres_data_dir(self) -> Path:
        return self.home / "pg"

    @property
    def chroma_data_dir(self) -> Path:
        return self.home / "chroma"


class _FromEnvironment(Settings):
    """The same fields, read from the environment and ``.env`` (what :meth:`Settings.from_env` uses)."""

    reads_environment = True


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _one_line(exc: ValidationError) -> str:
    """The first problem as ``VARIABLE must ..., got 'value'``."""
    error = exc.errors(include_url=False)[0]
    name = env_name(str(error["loc"][0])) if error["loc"] else "settings"
    kind, given, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "value_error":
        return f"{name} {ctx.get('error', error['msg'])}"
    if kind == "int_parsing" or kind == "int_from_float":
        return f"{name} must be an integer, got {given!r}"
    if kind == "float_parsing":
        return f"{name} must be a number, got {given!r}"
    if kind == "greater_than_equal":
        least = ctx.get("ge")
        return f"{name} must not be negative" if least == 0 else f"{name} must be at least {least}"
    if kind == "literal_error":
        return f"{name} must be {str(ctx.get('expected', '')).replace(chr(39), '')}, got {given!r}"
    return f"{name}: {error['msg']}, got {given!r}"
