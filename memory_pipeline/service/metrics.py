"""``/metrics`` of ``memory-pipeline serve``: Prometheus text format through prometheus-client.

What it counts: every HTTP request by route template, method and status (count and latency);
search stage times (``search``: the whole ``MemoryStore`` call, ``embed_queries``: the query
batcher's encode call); the batcher's batch sizes; and, read from Postgres at each scrape, the
pipeline's gauges (:mod:`memory_pipeline.storage.pipeline_metrics`). Each app has its own
registry, so several apps in one process (tests) do not share counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_pipeline.storage import pipeline_metrics

PREFIX = "memory_pipeline"
METRICS_PATH = "/metrics"
#: The route label of a request no route matched (404s of unknown paths stay one series).
UNMATCHED_ROUTE = "unmatched"
#: Seconds: from a fast cached search to a long ``wait``.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _PipelineCollector(Collector):
    """The pipeline's gauges, read from Postgres when scraped."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._connect() as conn:
            gauges = pipeline_metrics.read_gauges(conn)
        rows = GaugeMetricFamily(
            f"{PREFIX}_memory_rows", "Memories in memory_log by state", labels=["status"]
        )
        for status, count in gauges.rows_by_status.items():
            rows.add_metric([status], count)
        yield rows
        yield GaugeMetricFamily(
            f"{PREFIX}_dead_rows",
            "Memories given up on (state dead)",
            value=gauges.rows_by_status.get("dead", 0),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_oldest_pending_age_seconds",
            "Seconds since the oldest pending memory was written (0: none pending)",
            value=gauges.oldest_pending_age_seconds,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_embedding_lag_seconds",
            f"Mean seconds from write to embedding of new memories embedded in the last "
            f"{pipeline_metrics.LAG_WINDOW_SECONDS} s",
            value=gauges.embedding_lag_seconds,
        )


class ServiceMetrics:
    """The service's metrics in one registry."""

    def __init__(self, connect: Callable[[], Any] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            f"{PREFIX}_search_stage_duration_seconds",
            "Search time by stage (search: the whole call; embed_queries: one batched encode)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_query_batch_size",
            "Queries per encode call of the query batcher",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        if connect is not None:
            self.registry.register(_PipelineCollector(connect))

    @contextmanager
    def timed_stage(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(stage).observe(time.perf_counter() - start)

    def observe_encode(self, queries: int, seconds: float) -> None:
        """The query batcher's hook: one encode call of ``queries`` queries."""
        self.batch_size.observe(queries)
        self.stage.labels("embed_queries").observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting and timing each HTTP request under its route's template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def template(self, scope: Scope) -> str:
        """The route's path template (a request answered before routing, e.g. 401, too)."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] is not Match.NONE), None)
        return getattr(route, "path", None) or UNMATCHED_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an app that raises before answering
        start = time.perf_counter()

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            labels = (self.template(scope), scope["method"], str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
