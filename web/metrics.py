"""Prometheus metrics of the web tier (the worker's are published through Redis)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


async def refresh(state: object) -> None:
    """Update gauges that are read from elsewhere just before a scrape (see web.state)."""
    refresher = getattr(state, "extras", {}).get("metrics_refresh")
    if refresher is not None:
        await refresher()
