"""The Celery app the step workers run (``MEMORY_PIPELINE_EXECUTOR=celery``).

Start a worker with the same ``MEMORY_PIPELINE_*`` settings as the code location (database
URL, Chroma host, broker URL, model) and Dagster's storage URL::

    celery -A memory_pipeline.defs.celery_app worker --pool=solo --concurrency=1 -n embed1@%h

One step at a time per worker process (``--pool=solo``): the model already uses every core of
its machine, so a machine scales by running more worker processes only when it has the cores
and memory for them (about 1.4 GB each). The app is built from the same settings as the
executor (:mod:`memory_pipeline.defs.executors`), so both sides agree on queue, broker and
acknowledgement rules. The worker loads the model before it takes its first step.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from memory_pipeline.defs.executors import BACKEND_URL_ENV, BROKER_URL_ENV, celery_config_source
from memory_pipeline.defs.instance import STORAGE_URL_ENV, dagster_storage_url
from memory_pipeline.local_services import ensure_services
from memory_pipeline.settings import Settings

logger = logging.getLogger(__name__)


def export_dagster_storage_url(settings: Settings) -> None:
    """Point ``up``'s instance config at Dagster's storage (schema ``dagster`` of the app database).

    A run sends the worker its instance's settings, which name ``STORAGE_URL_ENV`` under ``up``
    (the Helm chart's name ``DAGSTER_PG_PASSWORD`` instead, set on the worker by its manifest).
    Without a database URL this is the home's local server, as on the machine that runs ``up``.
    """
    if os.environ.get(STORAGE_URL_ENV):
        return
    url = settings.database_url or ensure_services(settings).database_url
    os.environ[STORAGE_URL_ENV] = dagster_storage_url(url)


def make_worker_app(settings: Settings) -> Celery:
    """The Celery app with dagster-celery's step task, configured like the executor."""
    broker = os.environ.get(BROKER_URL_ENV) or settings.celery_broker_url
    if not broker:
        raise ValueError(f"a Celery worker needs {BROKER_URL_ENV}")
    backend = os.environ.get(BACKEND_URL_ENV) or broker
    args = CeleryExecutor.for_cli(
        broker=broker, backend=backend, config_source=celery_config_source(settings)
    ).app_args()
    celery_app = make_app(args)
    create_task(celery_app)
    return celery_app


def load_model() -> None:
    """Load the configured model into this process, as the embedding step will ask for it."""
    from memory_pipeline.defs.resources import EmbedderResource

    embedder = EmbedderResource().embedder()
    embedder.embed_batch(["warm up"])
    logger.info("model %s loaded in worker process %d", embedder.model_id, os.getpid())


@signals.worker_init.connect
def _load_model_in_solo_worker(sender: Any = None, **_: Any) -> None:
    # a solo worker runs its steps in this process; a prefork pool's children load their own
    if "solo" in str(getattr(sender, "pool_cls", "")).lower():
        load_model()


@signals.worker_process_init.connect
def _load_model_in_pool_process(**_: Any) -> None:
    load_model()


_settings = Settings.from_env()
export_dagster_storage_url(_settings)
app = make_worker_app(_settings)
