"""An inter-process lock on a home, so concurrent processes start each service once."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def home_lock(home: Path, name: str = "services") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<home>/.<name>.lock`` for the block."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / f".{name}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class HomeBusy(RuntimeError):
    """Another process holds the home's lock."""


@contextmanager
def exclusive_home_lock(home: Path, name: str) -> Iterator[None]:
    """Hold ``<home>/.<name>.lock`` for the block, or raise :class:`HomeBusy` at once.

    The lock goes with the process: a holder killed with ``kill -9`` releases it.
    """
    home.mkdir(parents=True, exist_ok=True)
    with open(home / f".{name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HomeBusy(f"{home} is in use by another process ({name})") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
