"""The ``bulk_import`` job and its schedule: load every new file of the import folder.

The folder is ``MEMORY_PIPELINE_IMPORT_DIR`` (default ``<home>/imports``), the schedule
``MEMORY_PIPELINE_IMPORT_CRON`` (hourly by default). "New" is decided by the import ledger
(the sha256 of each file's content), so files may stay in the folder after they are imported.
"""

from dagster import (
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    in_process_executor,
    job,
    op,
    schedule,
)

from memory_pipeline.defs.resources import PostgresResource
from memory_pipeline.imports import ImportSummary, import_candidates, import_paths
from memory_pipeline.settings import Settings

BULK_IMPORT_JOB = "bulk_import"


def _metadata(summary: ImportSummary, folder: str) -> dict[str, MetadataValue]:
    counts = summary.as_dict()
    metadata: dict[str, MetadataValue] = {
        "import_dir": MetadataValue.path(folder),
        **{
            key: MetadataValue.int(counts[key])
            for key in ("inserted", "duplicates", "rejected", "files_imported", "files_skipped")
        },
        "files_failed": MetadataValue.int(len(summary.failures)),
    }
    if summary.reject_file is not None:
        metadata["reject_file"] = MetadataValue.path(str(summary.reject_file))
    if summary.failures:
        metadata["failures"] = MetadataValue.md(
            "\n".join(f"- `{path.name}`: {error}" for path, error in summary.failures)
        )
    return metadata


@op(
    description=(
        "Import every file of the import folder not imported before (JSONL, CSV, Parquet) into "
        "memory_log as pending rows, through COPY and a staging table."
    ),
)
def import_new_files(context: OpExecutionContext, postgres: PostgresResource) -> Output[dict]:
    settings = Settings.from_env()
    folder = settings.resolved_import_dir
    files = import_candidates(settings)
    context.log.info(f"{len(files)} candidate file(s) in {folder}")
    summary = import_paths(postgres.database(), settings, files, keep_going=True)
    metadata = _metadata(summary, str(folder))
    for path, error in summary.failures:
        context.log.error(f"{path}: {error}")
    if summary.failures:
        # the readable files are imported; the run fails so the unreadable ones get noticed
        raise Failure(
            description=f"{len(summary.failures)} file(s) in {folder} could not be imported",
            metadata=metadata,
        )
    context.log.info(f"import: {summary.as_dict()}")
    return Output(summary.as_dict(), metadata=metadata)


@job(
    name=BULK_IMPORT_JOB,
    description="Load every new JSONL, CSV or Parquet file of MEMORY_PIPELINE_IMPORT_DIR.",
    tags={"memory_pipeline/job": BULK_IMPORT_JOB},
    # It reads files of the machine that runs the run: never on a step worker (Celery).
    executor_def=in_process_executor,
)
def bulk_import() -> None:
    import_new_files()


@schedule(
    name="bulk_import_schedule",
    job=bulk_import,
    cron_schedule=Settings.from_env().import_cron,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Runs bulk_import on MEMORY_PIPELINE_IMPORT_CRON when the import folder has files.",
)
def bulk_import_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    settings = Settings.from_env()
    folder = settings.resolved_import_dir
    files = import_candidates(settings)
    if not files:
        return SkipReason(f"no files to import in {folder}")
    # The ledger decides what is new; a run over already-imported files inserts nothing.
    return RunRequest(tags={"memory_pipeline/import_files": str(len(files))})


__all__ = ["bulk_import", "bulk_import_schedule", "import_new_files"]
