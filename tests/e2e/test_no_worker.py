"""What a client sees when no worker answers: a clear error, never a hang."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.e2e.conftest import Stack
from tests.e2e.sse import Received, stream
from tests.e2e.test_streaming import messages, new_chat
from tests.redis_lease import lease_redis_db

pytestmark = pytest.mark.e2e

LONELY_REDIS = lease_redis_db()  # a second database of this run: no worker beats there


@pytest.fixture(scope="module")
def lonely(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A web server whose Redis has no worker behind it."""
    redis.Redis.from_url(LONELY_REDIS).flushdb()
    env = {**stack_env, "REDIS_URL": LONELY_REDIS, "QUEUE_TIMEOUT_S": "2"}
    stack = Stack(env=env, logs=tmp_path_factory.mktemp("lonely"))
    try:
        stack.start_web()
        yield stack
    finally:
        stack.close()
        redis.Redis.from_url(LONELY_REDIS).flushdb()


@pytest.fixture
def phantom_worker() -> Iterator[None]:
    """A heartbeat with no process behind it: the web tier queues, nobody takes the job."""
    client = redis.Redis.from_url(LONELY_REDIS)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            client.zadd("chatbot:workers", {"phantom:1": time.time()})
            stop.wait(0.5)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
    client.zrem("chatbot:workers", "phantom:1")


def failed_generations(base: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    found = re.search(
        r'^chatbot_generations_total\{kind="chat",status="error"\} (\S+)$', text, flags=re.M
    )
    return float(found.group(1)) if found else 0.0


def test_no_worker_is_503_before_streaming(lonely: Stack) -> None:
    base = lonely.url()
    chat_id = new_chat(base, ("Human", "Hello?"))
    got = stream(base, f"/conversations/inference/{chat_id}")
    # Before streaming (no 200 with an error event after a queue timeout): a plain 503.
    assert got.status == 503
    assert got.events == []
    assert got.body["error"]["code"] == "no_worker"
    assert "chatbot worker" in got.body["error"]["message"]
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503


def test_model_load_failure_is_named_in_the_503(lonely: Stack) -> None:
    client = redis.Redis.from_url(LONELY_REDIS)
    client.set("chatbot:workers:model_error", "ModelNotFoundError: run chatbot models pull", ex=30)
    try:
        chat_id = new_chat(lonely.url(), ("Human", "Hello?"))
        got = stream(lonely.url(), f"/conversations/inference/{chat_id}")
        assert got.status == 503
        assert "chatbot models pull" in got.body["error"]["message"]
    finally:
        client.delete("chatbot:workers:model_error")


def test_queued_job_waits_while_a_worker_lives_and_fails_when_none_is_left(
    lonely: Stack,
) -> None:
    base = lonely.url()
    chat_id = new_chat(base, ("Human", "Hello?"))
    errors_before = failed_generations(base)
    client = redis.Redis.from_url(LONELY_REDIS)
    stop_beating = threading.Event()

    def beat() -> None:  # a worker that lives a while, takes nothing, then dies
        while not stop_beating.is_set():
            client.zadd("chatbot:workers", {"phantom:2": time.time()})
            stop_beating.wait(0.5)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    events: list[str] = []

    def on_event(event: object) -> None:
        events.append(getattr(event, "event", ""))
        if len(events) == 1:  # queued; it waits past QUEUE_TIMEOUT_S while a worker lives
            time.sleep(4)
            assert not stop_beating.is_set()
            stop_beating.set()

    got = stream(base, f"/conversations/inference/{chat_id}", on_event=on_event, timeout=60)
    thread.join()
    assert got.status == 200
    assert [e.event for e in got.events] == ["queue", "error"], [
        (e.event, e.data[:80]) for e in got.events
    ]
    assert got.events[0].json()["position"] == 1
    error = got.events[-1].json()["error"]
    assert error["code"] == "no_worker"
    assert "for 2 s" in error["message"]
    assert [m["role"] for m in messages(base, chat_id)] == ["Human"]
    assert failed_generations(base) == errors_before + 1  # counted in /metrics too
    # Asked again, nothing is left running to attach to: no worker, so a clear 503.
    again = stream(base, f"/conversations/inference/{chat_id}", timeout=20)
    assert again.status == 503 and again.body["error"]["code"] == "no_worker"


def test_stop_while_queued_cancels_at_once(lonely: Stack, phantom_worker: None) -> None:
    base = lonely.url()
    chat_id = new_chat(base, ("Human", "Hello?"))
    result: dict[str, Received] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("r", stream(base, f"/conversations/inference/{chat_id}"))
    )
    thread.start()
    time.sleep(0.5)
    response = httpx.post(f"{base}/conversations/stop/{chat_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    thread.join(5)
    got = result["r"]
    assert got.events[-1].event == "done"
    assert got.events[-1].json()["status"] == "cancelled"
