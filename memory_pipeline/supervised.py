"""A child process that ``memory-pipeline up`` runs and watches (``dagster dev``, ``serve``).

Each runs in its own process group, its output appended to a log under the home: started in
the background, ``dagster dev`` ignores signals, so the whole group is signalled to stop it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


def answers_ok(url: str) -> bool:
    """Whether ``url`` answers 200 now (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class SupervisedProcess:
    """One child process in its own group, logging to ``log_path``; started and stopped again."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def launch(
        self, command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(command),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=None if cwd is None else str(cwd),
            )
        self.started_at = time.monotonic()

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def lifetime(self) -> float:
        """Seconds since the last start."""
        return time.monotonic() - self.started_at

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left of it (daemons, workers)."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0f s; killing it", self.name, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
