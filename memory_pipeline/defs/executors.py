"""Which engine runs a run's steps: chosen by configuration, the definitions stay the same.

``MEMORY_PIPELINE_EXECUTOR`` picks the Dagster executor of the code location's jobs:

- ``in_process`` (default, ``up``): the run's own process executes its steps. Under Dagster's
  ``K8sRunLauncher`` (instance config) every run is its own pod, so this is also the plain
  Kubernetes path.
- ``multiprocess``: each step in a child process of the run.
- ``celery``: each step is a task on the Celery broker at ``MEMORY_PIPELINE_CELERY_BROKER_URL``,
  executed by long-lived workers (``celery -A memory_pipeline.defs.celery_app worker``) that keep
  the model loaded between steps. The run's process only orchestrates.

Where work spreads is decided by how many steps there are: a tenant run has one step, so a
backlog spreads over workers as several runs (the sensor's ``MEMORY_PIPELINE_MAX_ROWS_PER_RUN``
budget, a backfill's ``MEMORY_PIPELINE_BACKFILL_TENANTS_PER_RUN``). See docs/deployment.md.

Nothing here imports Celery unless the executor is ``celery`` (the definitions import stays light).
"""

from __future__ import annotations

from typing import Any

from dagster import BackfillPolicy, ExecutorDefinition, in_process_executor, multiprocess_executor

from memory_pipeline.settings import Settings

BROKER_URL_ENV = "MEMORY_PIPELINE_CELERY_BROKER_URL"
BACKEND_URL_ENV = "MEMORY_PIPELINE_CELERY_BACKEND_URL"
#: Queue of the step tasks; dagster-celery's own default, which its workers consume.
CELERY_QUEUE = "dagster"


def celery_config_source(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the executor (orchestrating runs) and the workers.

    A step's task is acknowledged when the step ends, not when a worker takes it, so a step
    whose worker dies (a lost machine, ``kill -9``, an evicted pod) goes back to the queue and
    another worker runs it: the broker gives it back once the visibility timeout has passed
    (Redis) or at once when the worker's connection drops (RabbitMQ). Rerunning a step is safe:
    rows are claimed in Postgres and vectors upserted by id (DESIGN §3).
    """
    from dagster_celery.defaults import broker_transport_options

    timeout = settings.celery_visibility_timeout
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # a busy worker holds no second step back from others
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            **broker_transport_options,
            # must exceed the longest step, or a slow step also runs a second time elsewhere
            "visibility_timeout": timeout,
            # how often idle workers look for steps of vanished workers (Redis)
            "unacked_restore_interval": max(1, min(10, timeout // 4)),
            "unacked_restore_throttle": 1,
        },
        "result_expires": 7 * 24 * 3600,
    }


def celery_executor_config(settings: Settings) -> dict[str, Any]:
    """The ``celery_executor`` config: broker and backend by environment variable, not value.

    Passing ``{"env": ...}`` keeps a broker password out of the definitions; each process
    (run worker, Celery worker) resolves it from its own environment.
    """
    backend_env = BACKEND_URL_ENV if settings.celery_backend_url else BROKER_URL_ENV
    return {
        "broker": {"env": BROKER_URL_ENV},
        "backend": {"env": backend_env},
        "config_source": celery_config_source(settings),
    }


def executor_from_settings(settings: Settings) -> ExecutorDefinition:
    """The executor named by ``MEMORY_PIPELINE_EXECUTOR`` (see the module docstring).

    Raises ``ValueError`` for ``celery`` without ``MEMORY_PIPELINE_CELERY_BROKER_URL``.
    """
    if settings.executor == "in_process":
        return in_process_executor
    if settings.executor == "multiprocess":
        return multiprocess_executor
    if not settings.celery_broker_url:
        raise ValueError(f"MEMORY_PIPELINE_EXECUTOR=celery needs {BROKER_URL_ENV}")
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_executor_config(settings), name="celery")


def backfill_policy(settings: Settings) -> BackfillPolicy:
    """One run for a whole backfill (a run costs seconds), or runs of N tenants to spread it."""
    if settings.backfill_tenants_per_run is None:
        return BackfillPolicy.single_run()
    return BackfillPolicy.multi_run(max_partitions_per_run=settings.backfill_tenants_per_run)
