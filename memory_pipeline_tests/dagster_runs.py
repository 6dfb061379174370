"""Runs recorded in a chosen status without launching them, for tests of what watches runs."""

from __future__ import annotations

from collections.abc import Mapping

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

# Dagster has no public API that records a run in a given status without launching it; this is
# the helper its own test suite uses.
from dagster._core.test_utils import create_run_for_test


def record_run(
    instance: DagsterInstance, status: DagsterRunStatus, tags: Mapping[str, str] | None = None
) -> DagsterRun:
    """A run of a placeholder job, stored in ``status`` with ``tags``; nothing executes it."""
    return create_run_for_test(instance, status=status, tags=dict(tags or {}))
