"""The benchmarks' stage timer wraps methods of every kind and puts them back unchanged."""

from __future__ import annotations

from memory_pipeline_bench.stage_timer import StageTimer


class Worker:
    def __init__(self) -> None:
        self.base = 10

    def method(self, x: int) -> int:
        return self.base + x

    @staticmethod
    def static(x: int) -> int:
        return 2 * x


def test_patched_times_static_and_instance_methods_and_restores_them() -> None:
    timer = StageTimer()
    worker = Worker()
    with timer.patched(Worker, "static", "static"), timer.patched(Worker, "method", "method"):
        assert worker.static(3) == 6  # still static: the instance is not passed in
        assert Worker.static(4) == 8
        assert worker.method(1) == 11
    assert timer.calls == {"static": 2, "method": 1}
    assert all(seconds >= 0 for seconds in timer.seconds.values())
    assert isinstance(Worker.__dict__["static"], staticmethod)
    assert "method" not in worker.__dict__
    assert worker.static(5) == 10 and worker.method(2) == 12
    assert timer.calls == {"static": 2, "method": 1}  # no timing once restored


def test_patched_instance_attribute() -> None:
    timer = StageTimer()
    worker = Worker()
    with timer.patched(worker, "method", "bound"):
        assert worker.method(5) == 15
    assert timer.calls == {"bound": 1}
    assert worker.method(6) == 16


def test_bench_search_stages_name_what_the_searcher_calls() -> None:
    """Bench B's breakdown wraps attributes by name: a rename must fail here, not in a bench run."""
    from memory_pipeline_bench.search_latency import SEARCH_STAGES

    for owner, attribute, stage in SEARCH_STAGES:
        assert callable(getattr(owner, attribute, None)), f"{stage}: {owner!r}.{attribute} is gone"
