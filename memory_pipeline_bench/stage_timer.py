"""Where the time goes: wall-clock seconds per stage, from timers wrapped around functions."""

from __future__ import annotations

import functools
import inspect
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class StageTimer:
    """Seconds spent per stage, accumulated over every call of the wrapped functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
                self.calls[stage] += 1

        return timed

    @contextmanager
    def patched(self, owner: Any, attribute: str, stage: str) -> Iterator[None]:
        """Time ``owner.attribute`` (a class, module or instance attribute) while inside.

        A static method stays static (else the wrapper would be bound to the instance).
        """
        static = isinstance(inspect.getattr_static(owner, attribute), staticmethod)
        original = getattr(owner, attribute)
        timed = self.wrap(stage, original)
        setattr(owner, attribute, staticmethod(timed) if static else timed)
        try:
            yield
        finally:
            setattr(owner, attribute, staticmethod(original) if static else original)
