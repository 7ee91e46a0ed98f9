"""Metrics: workers record in Redis once per generation; any web process renders them."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import FAMILIES, count_generation_ended, queue_keys
from shared.queue import make_celery
from shared.workers import WORKERS_KEY
from tests.conftest import app_client, make_settings
from web.app import create_app
from web.metrics import render
from worker import metrics as worker_metrics

REDIS_URL = os.environ["REDIS_URL"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text page."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own, so runs beside it do not change its numbers."""
    name = f"test:metrics:{uuid.uuid4().hex}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)


@pytest.fixture
async def aclient() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_generation_is_written_once_and_rendered(
    prefix: str, aclient: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(worker_metrics.time, "perf_counter", clock)
    sync = redis.Redis.from_url(REDIS_URL)
    queued = datetime(2026, 1, 1, tzinfo=UTC)
    for attempt in (1, 2):  # two generations add up
        with worker_metrics.recording(sync, prefix=prefix):
            worker_metrics.generation_started(
                kind="internet",
                queued_at=queued,
                started_at=queued + timedelta(seconds=0.2),
                attempt=attempt,
            )
            worker_metrics.web_search(outcome="ok", seconds=0.3)
            worker_metrics.web_pages(ok=2, cached=1, failed=1, seconds=1.2)
            clock.now += 0.4  # first token after 0.4 s
            worker_metrics.token()
            for gap in (0.004, 0.015, 0.015, 2.0):
                clock.now += gap
                worker_metrics.token()
            worker_metrics.tokens_used(prompt_tokens=30, completion_tokens=5)
            if attempt == 1:  # nothing reaches Redis before the generation ends
                assert not list(sync.scan_iter(f"{prefix}*"))
        count_generation_ended(sync, kind="internet", status="done", prefix=prefix)
    worker_metrics.token()  # outside a generation: ignored

    got = samples((await render(aclient, prefix=prefix, queue=f"q-{prefix}")).decode())
    kind = (("kind", "internet"),)
    assert got["chatbot_generations_total", (("kind", "internet"), ("status", "done"))] == 2
    assert got["chatbot_generated_tokens_total", kind] == 10
    assert got["chatbot_prompt_tokens_total", kind] == 60
    assert got["chatbot_generation_restarts_total", kind] == 1
    assert got["chatbot_time_to_first_token_seconds_count", kind] == 2
    assert got["chatbot_time_to_first_token_seconds_bucket", (*kind, ("le", "0.25"))] == 0
    assert got["chatbot_time_to_first_token_seconds_bucket", (*kind, ("le", "0.5"))] == 2
    assert got["chatbot_time_to_first_token_seconds_sum", kind] == pytest.approx(0.8)
    gaps = {
        le: got["chatbot_inter_token_seconds_bucket", (*kind, ("le", le))]
        for le in ("0.005", "0.01", "0.02", "1.0", "+Inf")
    }
    assert gaps == {"0.005": 2, "0.01": 2, "0.02": 6, "1.0": 6, "+Inf": 8}  # cumulative
    assert got["chatbot_inter_token_seconds_count", kind] == 8
    assert got["chatbot_queue_wait_seconds_bucket", (*kind, ("le", "0.5"))] == 2
    assert got["chatbot_web_searches_total", (("outcome", "ok"),)] == 2
    assert got["chatbot_web_search_duration_seconds_count", ()] == 2
    assert got["chatbot_web_pages_total", (("outcome", "ok"),)] == 4
    assert got["chatbot_web_pages_total", (("outcome", "cached"),)] == 2
    assert got["chatbot_web_pages_total", (("outcome", "error"),)] == 2
    assert got["chatbot_web_fetch_duration_seconds_bucket", (("le", "2.5"),)] == 2
    assert got["chatbot_worker_metrics_up", ()] == 1
    # The web process's own metrics are on the same page.
    names = {name for name, _ in got}
    assert "chatbot_sse_active_streams" in names
    # One hash per family, a handful of fields: batched, not a key per token.
    assert {k.decode() for k in sync.scan_iter(f"{prefix}*")} <= {
        f"{prefix}{family.name}" for family in FAMILIES
    }


async def test_queue_depth_counts_every_priority_list(
    aclient: aioredis.Redis, tmp_path: Path
) -> None:
    queue = f"test-queue-{uuid.uuid4().hex}"
    celery = make_celery(make_settings(tmp_path), "test-metrics")
    try:
        for priority in (None, 0, 5, 9):  # kombu keeps priorities 3..9 in their own lists
            celery.send_task("chatbot.nothing", queue=queue, priority=priority)
        sync = redis.Redis.from_url(REDIS_URL)
        assert sum(sync.llen(key) for key in queue_keys(queue)) == 4
        assert len([key for key in queue_keys(queue) if sync.exists(key)]) == 3
        got = samples((await render(aclient, queue=queue)).decode())
        assert got["chatbot_queue_depth", (("queue", queue),)] == 4
    finally:
        redis.Redis.from_url(REDIS_URL).delete(*queue_keys(queue))


@pytest.fixture
async def metrics_client(tmp_path: Path, sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(make_settings(tmp_path, database_url=sqlite_url)) as client:
        yield client


async def test_metrics_route(metrics_client: httpx.AsyncClient) -> None:
    await metrics_client.get("/healthz")
    response = await metrics_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = samples(response.text)
    assert (
        got[
            "chatbot_http_requests_total",
            (("method", "GET"), ("route", "/healthz"), ("status", "200")),
        ]
        >= 1
    )
    assert ("chatbot_queue_depth", (("queue", "inference"),)) in got
    assert ("chatbot_workers", ()) in got
    assert got["chatbot_worker_metrics_up", ()] == 1
    for family in FAMILIES:
        assert f"# TYPE {family.name}" in response.text


async def test_metrics_without_redis_still_render(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, database_url=sqlite_url, redis_url="redis://127.0.0.1:1/0")
    async with app_client(settings) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got["chatbot_worker_metrics_up", ()] == 0
    assert ("chatbot_sse_active_streams", ()) in got


async def test_readyz_reads_a_heartbeat_before_pinging_workers(
    tmp_path: Path, sqlite_url: str
) -> None:
    # A Redis database of this test's own: a heartbeat here fools no other test.
    url = REDIS_URL.rsplit("/", 1)[0] + "/14"
    sync = redis.Redis.from_url(url)
    sync.delete(WORKERS_KEY)
    async with app_client(
        make_settings(tmp_path, database_url=sqlite_url, redis_url=url)
    ) as client:
        lonely = await client.get("/readyz")
        sync.zadd(WORKERS_KEY, {"test-host:1": time.time()})
        ready = await client.get("/readyz")
    sync.delete(WORKERS_KEY)
    assert ready.status_code == 200
    # A fresh heartbeat answers alone: no ping broadcast, no ping wording.
    assert ready.json()["checks"]["workers"] == {"ok": True, "workers": 1}
    # Without a heartbeat the Celery ping says more, and its timeout bounds the wait.
    assert lonely.status_code == 503
    assert "no worker" in lonely.json()["checks"]["workers"]["error"]
    assert "ping" in lonely.json()["checks"]["workers"]["error"]


async def test_lifespan_puts_the_signal_handlers_back(tmp_path: Path, sqlite_url: str) -> None:
    # A handler to wrap, whatever the test run inherited (`nohup` and `cmd &` ignore SIGINT,
    # and an ignored signal is left alone).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        app = create_app(make_settings(tmp_path, database_url=sqlite_url))
        async with app.router.lifespan_context(app):
            during = signal.getsignal(signal.SIGINT)
        assert during is not before[signal.SIGINT]  # wrapped while serving
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        signal.signal(signal.SIGINT, outer)
