"""Prometheus metrics: this web process's own, and the workers' read from Redis.

The web tier's metrics (requests, open streams, SSE events) live in :data:`REGISTRY`.
The workers' (generations, tokens, latencies, web search) are kept in Redis by
``worker.metrics`` so that any web process on any host can report them: :func:`render`
reads them with one round trip and renders both. The worker numbers are cluster-wide,
the same on every web process (aggregate them with ``max``, not ``sum``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from shared.metrics import FAMILIES, INF, KEY_PREFIX, SEPARATOR, Family, Snapshot, read_snapshot
from shared.queue import INFERENCE_QUEUE

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "chatbot_http_requests_total",
    "HTTP requests by method, route and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "chatbot_http_request_duration_seconds",
    "Time to serve a request (for streams: until the stream ended).",
    ["route"],
    registry=REGISTRY,
)
ACTIVE_STREAMS = Gauge(
    "chatbot_sse_active_streams", "Open SSE streams in this process.", registry=REGISTRY
)
STREAM_EVENTS = Counter(
    "chatbot_sse_events_total", "SSE events sent, by event type.", ["event"], registry=REGISTRY
)
#: The token events' child, looked up once: ``labels()`` per event was a tenth of the relay.
TOKEN_EVENTS = STREAM_EVENTS.labels("token")
TOKENHUB_CONNECTED = Gauge(
    "chatbot_tokenhub_connected",
    "1 while this process's pub/sub connection to Redis (live tokens) is open, else 0: "
    "while 0, streams get their tokens only by re-reading their Redis Streams.",
    registry=REGISTRY,
)
TOKENHUB_RECONNECTS = Counter(
    "chatbot_tokenhub_reconnects_total",
    "Times this process's pub/sub connection was opened again after a loss or a failed try.",
    registry=REGISTRY,
)

#: Longest a scrape waits for Redis before rendering without the worker metrics.
REDIS_TIMEOUT_S = 2.0


class WorkerCollector(Collector):
    """Renders a :class:`~shared.metrics.Snapshot` of the workers' metrics, or only
    ``chatbot_worker_metrics_up 0`` when Redis could not be read."""

    def __init__(self, snapshot: Snapshot | None, *, queue: str = INFERENCE_QUEUE) -> None:
        self.snapshot = snapshot
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "chatbot_worker_metrics_up",
            "1 if this scrape could read the worker metrics from Redis.",
            value=0 if self.snapshot is None else 1,
        )
        yield up
        if self.snapshot is None:
            return
        depth = GaugeMetricFamily(
            "chatbot_queue_depth", "Jobs waiting in the queue for a worker.", labels=["queue"]
        )
        depth.add_metric([self.queue], self.snapshot.queue_depth)
        yield depth
        yield GaugeMetricFamily(
            "chatbot_queue_unacked",
            "Jobs that workers have taken and not yet finished.",
            value=self.snapshot.unacked,
        )
        yield GaugeMetricFamily(
            "chatbot_workers",
            "Worker processes with a loaded model that checked in recently.",
            value=self.snapshot.workers,
        )
        for family in FAMILIES:
            values = self.snapshot.values.get(family.name, {})
            if family.is_histogram:
                yield _histogram(family, values)
            else:
                yield _counter(family, values)


def _counter(family: Family, values: dict[str, float]) -> Metric:
    metric = CounterMetricFamily(family.name, family.help, labels=list(family.labels))
    for field, value in sorted(values.items()):
        label_values = field.split(SEPARATOR) if family.labels else []
        if len(label_values) == len(family.labels):
            metric.add_metric(label_values, value)
    return metric


def _histogram(family: Family, values: dict[str, float]) -> Metric:
    metric = HistogramMetricFamily(family.name, family.help, labels=list(family.labels))
    series: dict[tuple[str, ...], dict[str, float]] = {}
    for field, value in values.items():
        *names, part = field.split(SEPARATOR)
        if len(names) == len(family.labels):
            series.setdefault(tuple(names), {})[part] = value
    for label_values, parts in sorted(series.items()):
        cumulative = 0.0
        buckets: list[tuple[str, float]] = []
        for bound in family.buckets:
            le = repr(float(bound))  # as the workers name the field, and as Prometheus does
            cumulative += parts.get(le, 0.0)
            buckets.append((le, cumulative))
        cumulative += parts.get(INF, 0.0)
        buckets.append((INF, cumulative))
        metric.add_metric(list(label_values), buckets, parts.get("sum", 0.0))
    return metric


class _Scrape(Collector):
    """Several collectors rendered as one."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


async def render(
    client: aioredis.Redis, *, prefix: str = KEY_PREFIX, queue: str = INFERENCE_QUEUE
) -> bytes:
    """The Prometheus text of this process's metrics and the workers' (from Redis)."""
    snapshot: Snapshot | None
    try:
        snapshot = await asyncio.wait_for(
            read_snapshot(client, prefix=prefix, queue=queue), timeout=REDIS_TIMEOUT_S
        )
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("metrics: could not read the worker metrics from Redis: %s", exc)
        snapshot = None
    return generate_latest(_Scrape([REGISTRY, WorkerCollector(snapshot, queue=queue)]))
