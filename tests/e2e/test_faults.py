"""Faults users meet: workers killed, Redis lost mid-answer, a web process killed, stop on a
dead worker. Real uvicorn, Celery, Postgres and the model, and a Redis of this module's own
(on its own port) so it can be stopped and started again.

Every test checks the same promises: at most one saved Assistant message per question, the
streamed text equals the saved text, no generation is left queued or running, and the
stream ends with a final event.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from tests.e2e.conftest import Stack, free_port, wait_until
from tests.e2e.sse import Received, stream
from tests.e2e.test_streaming import messages, new_chat

pytestmark = pytest.mark.e2e

STORY = "Write a long story about a lighthouse keeper and a storm, in many paragraphs."
#: A not-a-hang guard for detecting a dead worker (the sweep needs about 12 s).
DETECTION_GUARD_S = 40


class OwnRedis:
    """A redis-server of this module alone, that a test can stop and start again."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        assert binary, "redis-server is needed for the fault tests"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._answers, "redis-server to answer", timeout=10)

    def stop(self) -> None:
        assert self.process is not None
        self.process.kill()  # as a crash would: it keeps nothing (no persistence)
        self.process.wait()
        self.process = None

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url).ping())
        except redis.RedisError:
            return False


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture(scope="module")
def faults(
    stack_env: dict[str, str], own_redis: OwnRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Two web processes and one worker on the module's own Redis."""
    env = {
        **stack_env,
        "REDIS_URL": own_redis.url,
        "MAX_NEW_TOKENS": "120",
        "STREAM_GRACE_S": "5",  # a reconnect after a killed web process comes in time
    }
    stack = Stack(env=env, logs=tmp_path_factory.mktemp("faults"))
    try:
        stack.start_worker("worker_1")
        stack.start_web("web_a")
        stack.start_web("web_b")
        yield stack
    finally:
        stack.close()


def _db(stack: Stack) -> str:
    return stack.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")


def generation_row(stack: Stack, generation_id: str) -> tuple[str, int]:
    with psycopg.connect(_db(stack)) as conn:
        row = conn.execute(
            "SELECT status, attempts FROM generations WHERE id = %s", (generation_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def active_generations(stack: Stack) -> int:
    with psycopg.connect(_db(stack)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM generations WHERE status IN ('queued', 'running')"
        ).fetchone()
    return int(row[0]) if row else 0


def assert_promises_kept(stack: Stack, chat_id: str, streamed: str | None = None) -> dict[str, Any]:
    """At most one saved answer, equal to what was streamed; nothing left active."""
    wait_until(lambda: active_generations(stack) == 0, "no generation to be active", timeout=60)
    answers = [m for m in messages(stack.url("web_a"), chat_id) if m["role"] == "Assistant"]
    assert len(answers) <= 1, answers
    if streamed is not None:
        assert answers and answers[0]["message"] == streamed
    return answers[0] if answers else {}


def text_of_last_attempt(got: Received) -> str:
    names = [e.event for e in got.events]
    start = max((i for i, n in enumerate(names) if n in ("generation", "restart")), default=0)
    return "".join(e.data for e in got.events[start:] if e.event == "message")


def kill_worker(stack: Stack, name: str) -> None:
    """SIGKILL a Celery worker's main process and its children, as a platform would."""
    main = stack.processes[name].pid
    children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
    for pid in [main, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    stack.processes.pop(name).wait(timeout=10)


def ensure_worker(stack: Stack) -> str:
    live = [name for name in stack.processes if name.startswith("worker")]
    if live:
        return live[0]
    name = f"worker_{int(time.time() * 1000)}"
    stack.start_worker(name)
    return name


def test_worker_killed_while_listened_to_is_retried_and_finished(faults: Stack) -> None:
    victim = ensure_worker(faults)
    base = faults.url("web_a")
    chat_id = new_chat(base, ("Human", STORY))
    killed_at: list[float] = []
    restarted_at: list[float] = []

    def on_event(event: Any) -> None:
        if event.event == "message" and not killed_at:
            kill_worker(faults, victim)
            killed_at.append(time.monotonic())
            faults.start_worker("worker_2")  # a replacement comes up
        if event.event == "restart":
            restarted_at.append(time.monotonic())

    got = stream(base, f"/conversations/inference/{chat_id}", on_event=on_event, timeout=180)
    assert killed_at and restarted_at
    assert restarted_at[0] - killed_at[0] < DETECTION_GUARD_S
    assert got.events[-1].event == "done", [e.event for e in got.events]
    text = text_of_last_attempt(got)
    assert got.done is not None and got.done["message"]["message"] == text
    assert generation_row(faults, got.generation_id) == ("done", 2)
    assert_promises_kept(faults, chat_id, text)


def test_worker_killed_with_nobody_listening_ends_with_its_partial_answer(
    faults: Stack,
) -> None:
    victim = ensure_worker(faults)
    base = faults.url("web_a")
    chat_id = new_chat(base, ("Human", STORY))
    first = stream(base, f"/conversations/inference/{chat_id}", max_tokens=3)
    kill_worker(faults, victim)  # the client has hung up; nobody listens now
    killed_at = time.monotonic()
    wait_until(
        lambda: generation_row(faults, first.generation_id)[0] != "running",
        "the sweep to notice the dead worker",
        timeout=DETECTION_GUARD_S,
    )
    assert time.monotonic() - killed_at < DETECTION_GUARD_S
    assert generation_row(faults, first.generation_id) == ("cancelled", 1)
    # The stream ended with a final event that carries the saved partial answer.
    rest = stream(base, f"/conversations/inference/{chat_id}", last_event_id=first.last_id)
    assert rest.done is not None and rest.done["finish_reason"] == "abandoned"
    streamed = first.text + rest.text
    saved = assert_promises_kept(faults, chat_id, streamed)
    assert saved["status"] == "cancelled" and streamed
    # Asked again, the chat answers (nothing was left running).
    ensure_worker(faults)
    again = stream(base, f"/conversations/inference/{chat_id}?regenerate=true", timeout=120)
    assert again.done is not None and again.done["status"] == "done"


def test_worker_child_killed_is_taken_over_at_once(faults: Stack) -> None:
    survivor = ensure_worker(faults)
    base = faults.url("web_a")
    chat_id = new_chat(base, ("Human", STORY))
    killed: list[int] = []

    def on_event(event: Any) -> None:
        if event.event == "message" and not killed:
            main = faults.processes[survivor].pid
            child = int(Path(f"/proc/{main}/task/{main}/children").read_text().split()[0])
            os.kill(child, signal.SIGKILL)  # as if out of memory
            killed.append(child)

    got = stream(base, f"/conversations/inference/{chat_id}", on_event=on_event, timeout=180)
    assert killed
    assert "restart" in [e.event for e in got.events] and got.events[-1].event == "done"
    text = text_of_last_attempt(got)
    assert generation_row(faults, got.generation_id) == ("done", 2)
    assert_promises_kept(faults, chat_id, text)


def test_stop_on_a_dead_worker_ends_the_answer_keeping_its_text(faults: Stack) -> None:
    victim = ensure_worker(faults)
    base = faults.url("web_a")
    chat_id = new_chat(base, ("Human", STORY))
    stops: list[int] = []

    def on_event(event: Any) -> None:
        if event.event == "message" and not stops:
            kill_worker(faults, victim)
            response = httpx.post(f"{base}/conversations/stop/{chat_id}")
            stops.append(response.status_code)
            assert response.json()["status"] in ("cancelled", "cancelling")

    got = stream(base, f"/conversations/inference/{chat_id}", on_event=on_event, timeout=120)
    assert stops and stops[0] in (200, 202)
    assert got.done is not None, [e.event for e in got.events]
    assert got.done["status"] == "cancelled" and got.done["finish_reason"] == "cancelled"
    assert got.done["message"]["message"] == got.text
    assert_promises_kept(faults, chat_id, got.text)
    # Stop again: nothing runs any more.
    assert httpx.post(f"{base}/conversations/stop/{chat_id}").status_code == 409


def test_web_process_killed_mid_answer_resumes_on_another(faults: Stack) -> None:
    ensure_worker(faults)
    chat_id = new_chat(faults.url("web_a"), ("Human", STORY))
    first = stream(faults.url("web_a"), f"/conversations/inference/{chat_id}", max_tokens=5)
    faults.processes["web_a"].kill()
    faults.processes.pop("web_a").wait(timeout=10)
    rest = stream(
        faults.url("web_b"),
        f"/conversations/inference/{chat_id}",
        last_event_id=first.last_id,
        timeout=120,
    )
    assert rest.done is not None and rest.done["status"] == "done"
    streamed = first.text + rest.text
    assert rest.done["message"]["message"] == streamed
    faults.start_web("web_a")
    assert_promises_kept(faults, chat_id, streamed)


def test_redis_lost_mid_answer_keeps_the_answer(faults: Stack, own_redis: OwnRedis) -> None:
    ensure_worker(faults)
    base = faults.url("web_b")
    chat_id = new_chat(base, ("Human", STORY))
    received: list[Received] = []
    outage: list[float] = []

    def on_event(event: Any) -> None:
        if event.event == "message" and not outage:
            own_redis.stop()
            outage.append(time.monotonic())
            time.sleep(4)
            own_redis.start()  # empty: Redis keeps nothing here

    # An EventSource-like client: it reconnects with Last-Event-ID until a final event.
    last_id: str | None = None
    for _ in range(10):
        got = stream(
            base,
            f"/conversations/inference/{chat_id}",
            last_event_id=last_id,
            on_event=on_event,
            timeout=120,
        )
        if got.status == 204:
            break
        assert got.status == 200, got.body
        received.append(got)
        ids = [e.id for e in got.events if e.id]
        last_id = ids[-1] if ids else last_id
        if got.events and got.events[-1].event in ("done", "error") and got.events[-1].id:
            break
    assert outage
    final = received[-1].events[-1]
    assert final.event == "done", [e.event for r in received for e in r.events]
    # What a client shows: the tokens in order, dropped at a `restart` (the worker sends the
    # whole text again when Redis lost what it had).
    pieces: list[str] = []
    for event in (e for r in received for e in r.events):
        if event.event == "restart":
            pieces.clear()
        elif event.event == "message":
            pieces.append(event.data)
    streamed = "".join(pieces)
    done = received[-1].done
    assert done is not None and done["message"]["message"] == streamed
    assert done["finish_reason"] in ("interrupted", "stop", "length")
    assert_promises_kept(faults, chat_id, streamed)
    # Readiness recovers with Redis (a stale connection is replaced, not reported).
    wait_until(
        lambda: httpx.get(f"{base}/readyz").status_code == 200, "readiness after Redis returns"
    )
