"""A fault for the distributed test, imported by its Celery workers (``celery worker --include``).

When ``MEMORY_PIPELINE_TEST_STALL_USER`` is set, the first worker to write that user's vectors
to Chroma stops right after the write — its Postgres transaction open, the rows claimed and
locked — records its pid in ``MEMORY_PIPELINE_TEST_STALL_MARKER`` and waits to be killed. The
marker is created exclusively, so only the first attempt stalls; the rerun elsewhere does not.
"""

from __future__ import annotations

import os
import time
from typing import Any

from memory_pipeline.vector_store import ChromaVectorStore

STALL_USER_ENV = "MEMORY_PIPELINE_TEST_STALL_USER"
STALL_MARKER_ENV = "MEMORY_PIPELINE_TEST_STALL_MARKER"
STALL_SECONDS = 300.0

_upsert_vectors = ChromaVectorStore.upsert_vectors


def _claim_the_stall(marker: str) -> bool:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(str(os.getpid()))
    return True


def _upsert_then_stall(self: ChromaVectorStore, tenant: Any, *args: Any, **kwargs: Any) -> None:
    _upsert_vectors(self, tenant, *args, **kwargs)
    user, marker = os.environ.get(STALL_USER_ENV), os.environ.get(STALL_MARKER_ENV)
    if user and marker and tenant.user_id == user and _claim_the_stall(marker):
        time.sleep(STALL_SECONDS)  # the test kills this process (kill -9) meanwhile


ChromaVectorStore.upsert_vectors = _upsert_then_stall  # type: ignore[method-assign]
