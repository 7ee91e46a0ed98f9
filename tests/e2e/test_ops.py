"""Operations end to end: the Procfile's processes, two workers behind two web servers,
metrics, request ids in the logs, and what SIGTERM does to web servers and workers.

Everything here runs against a Redis database of its own, so Celery workers of other
test runs on this machine never take these jobs (nor these workers theirs).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import POSTGRES_ADMIN, ROOT
from tests.e2e.conftest import Stack, free_port, wait_until
from tests.e2e.sse import Received, stream
from tests.e2e.test_streaming import STORY, messages, new_chat
from tests.redis_lease import lease_redis_db

pytestmark = pytest.mark.e2e

OPS_REDIS = lease_redis_db()  # a database of this run alone
FLOWER_AUTH = ("ops", "s3cret")


def procfile() -> dict[str, str]:
    """The Procfile's processes: name -> command line (run with ``bash -c``, as Heroku
    and foreman do)."""
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def start_procfile(stack: Stack, process: str, *, name: str, **env: str) -> None:
    stack._spawn(name, ["bash", "-c", procfile()[process]], env)


def metric_samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def active_generations(stack: Stack) -> list[tuple[str, str, int]]:
    url = stack.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id::text, status, attempts FROM generations "
            "WHERE status IN ('queued', 'running')"
        ).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def generation_row(stack: Stack, generation_id: str) -> tuple[str, int]:
    url = stack.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, attempts FROM generations WHERE id = %s", (generation_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def wait_idle(stack: Stack) -> None:
    wait_until(lambda: not active_generations(stack), "no generation to be queued or running")


@pytest.fixture(scope="module")
def ops(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two workers (one from the Procfile), two web servers (one from the Procfile) and
    Flower (from the Procfile), all on one Redis database of their own."""
    redis.Redis.from_url(OPS_REDIS).flushdb()
    env = {
        **stack_env,
        "REDIS_URL": OPS_REDIS,
        # The Procfile says `python`: the virtual environment's.
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
        # Two workers share this machine's cores: one thread each (llama.cpp's threads
        # spin, so more threads than cores is many times slower, not a little).
        "THREADS": "1",
        "MAX_NEW_TOKENS": "80",
        "QUEUE_TIMEOUT_S": "20",  # chats wait for a busy worker here, on purpose
    }
    stack = Stack(env=env, logs=tmp_path_factory.mktemp("ops"))
    try:
        # Start everything at once; the two workers load the model side by side.
        start_procfile(stack, "worker", name="worker_a")
        web_port, flower_port = free_port(), free_port()
        start_procfile(stack, "web", name="web_a", PORT=str(web_port))
        start_procfile(stack, "flower", name="flower", PORT=str(flower_port))
        stack.ports.update(web_a=web_port, flower=flower_port)
        stack.start_web("web_b")
        stack.start_worker("worker_b")
        wait_until(
            lambda: len(stack.live_workers()) >= 2, "both workers to load the model", timeout=90
        )
        wait_until(lambda: _status(f"{stack.url('web_a')}/healthz") == 200, "web_a to serve")
        yield stack
    finally:
        stack.close()


def _status(url: str, **kwargs: Any) -> int:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code
    except httpx.HTTPError:
        return 0


def test_release_migrates_a_fresh_database(stack_env: dict[str, str]) -> None:
    name = f"chatbot_release_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES_ADMIN
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        # Heroku hands out postgres:// URLs; the release line must take them as they are.
        url = f"postgres://{admin.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
        env = {
            **stack_env,
            "DATABASE_URL": url,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        done = subprocess.run(
            ["bash", "-c", procfile()["release"]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        with psycopg.connect(url.replace("postgres://", "postgresql://")) as conn:
            tables = {
                r[0]
                for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
            head = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert {"chats", "conversations", "generations", "alembic_version"} <= tables
        assert head is not None
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_procfile_web_and_flower_answer(ops: Stack) -> None:
    assert procfile().keys() >= {"release", "web", "worker", "flower"}
    web = ops.url("web_a")
    assert httpx.get(f"{web}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{web}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["workers"]["workers"] == 2
    flower = ops.url("flower")
    assert _status(f"{flower}/api/workers") == 401  # basic auth is on

    def flower_lists_both() -> bool:
        response = httpx.get(
            f"{flower}/api/workers", params={"refresh": "1"}, auth=FLOWER_AUTH, timeout=5
        )
        return response.status_code == 200 and len(response.json()) >= 2

    wait_until(flower_lists_both, "Flower to list both workers", timeout=20)
    names = set(httpx.get(f"{flower}/api/workers", auth=FLOWER_AUTH, timeout=5).json())
    assert any(name.startswith("worker-") for name in names), names  # the Procfile's worker


def test_concurrent_chats_run_on_both_workers(ops: Stack) -> None:
    web_a, web_b = ops.url("web_a"), ops.url("web_b")
    chats = [
        new_chat(web_a, ("Human", STORY)),
        new_chat(web_b, ("Human", STORY)),
        new_chat(web_a, ("Human", "Say hello.")),
    ]
    results: dict[int, Received] = {}
    answering = [threading.Event(), threading.Event()]

    def run(index: int, base: str) -> None:
        def on_event(event: Any) -> None:
            if event.event == "message" and index < 2:
                answering[index].set()

        results[index] = stream(base, f"/conversations/inference/{chats[index]}", on_event=on_event)

    threads = [
        threading.Thread(target=run, args=(i, base)) for i, base in enumerate((web_a, web_b))
    ]
    for thread in threads:
        thread.start()
    assert all(event.wait(30) for event in answering)
    # Both workers are busy: a third chat waits in the queue, and the gauge shows it.
    threads.append(threading.Thread(target=run, args=(2, web_b)))
    threads[-1].start()
    depth: list[float] = []

    def queued() -> bool:
        depth.append(metric_samples(web_b)["chatbot_queue_depth", (("queue", "inference"),)])
        return depth[-1] >= 1

    wait_until(queued, "the third chat to wait in the queue", timeout=5)
    for thread in threads:
        thread.join(90)
    generation_ids = set()
    for index in (0, 1):
        got = results[index]
        assert got.done is not None and got.done["status"] == "done"
        generation_ids.add(got.generation_id)
    assert len(generation_ids) == 2
    third = results[2].done
    assert third is not None and third["status"] == "done"
    assert third["timings"]["queue_ms"] > 100  # it waited for a free worker

    def ran_on(worker: str) -> set[str]:
        return {
            line["generation_id"]
            for line in json_lines(ops.log(worker))
            if line.get("message") == "generation done" and "generation_id" in line
        }

    on_a, on_b = ran_on("worker_a") & generation_ids, ran_on("worker_b") & generation_ids
    # One generation at a time per worker process: the second chat went to the other one.
    assert len(on_a) == 1 and len(on_b) == 1, (on_a, on_b)


def test_a_stream_started_on_one_web_server_continues_on_the_other(ops: Stack) -> None:
    web_a, web_b = ops.url("web_a"), ops.url("web_b")
    chat_id = new_chat(web_a, ("Human", "List five fruits and describe each briefly."))
    head = stream(web_a, f"/conversations/inference/{chat_id}", max_tokens=5)
    # Attach on B mid-answer (a second tab), and resume on B where A left off (a reload).
    attached: dict[str, Received] = {}
    thread = threading.Thread(
        target=lambda: attached.update(got=stream(web_b, f"/conversations/inference/{chat_id}"))
    )
    thread.start()
    tail = stream(web_b, f"/conversations/inference/{chat_id}", last_event_id=head.last_id)
    thread.join(60)
    assert tail.done is not None and tail.done["status"] == "done"
    assert not tail.named("generation")
    assert head.text + tail.text == tail.done["message"]["message"]
    assert attached["got"].generation_id == head.generation_id
    assert attached["got"].text == tail.done["message"]["message"]


def test_metrics_move_after_a_generation(ops: Stack) -> None:
    wait_idle(ops)
    web_a, web_b = ops.url("web_a"), ops.url("web_b")
    before = metric_samples(web_b)
    chat_id = new_chat(web_a, ("Human", "Say hello."))
    got = stream(web_a, f"/conversations/inference/{chat_id}")
    assert got.done is not None
    after = metric_samples(web_b)  # another web process sees the worker's numbers
    chat = (("kind", "chat"),)

    def moved(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert moved("chatbot_generations_total", (*chat, ("status", "done"))) == 1
    assert moved("chatbot_generated_tokens_total", chat) == got.done["usage"]["completion_tokens"]
    assert moved("chatbot_prompt_tokens_total", chat) == got.done["usage"]["prompt_tokens"]
    assert moved("chatbot_time_to_first_token_seconds_count", chat) == 1
    assert moved("chatbot_inter_token_seconds_count", chat) >= 1
    assert moved("chatbot_queue_wait_seconds_count", chat) == 1
    assert after["chatbot_queue_depth", (("queue", "inference"),)] == 0
    assert after["chatbot_workers", ()] == 2
    assert after["chatbot_worker_metrics_up", ()] == 1
    for name in (
        "chatbot_web_searches_total",
        "chatbot_web_search_duration_seconds",
        "chatbot_web_fetch_duration_seconds",
        "chatbot_web_pages_total",
    ):
        assert f"# TYPE {name}" in httpx.get(f"{web_b}/metrics").text
    # Web A's own numbers: the stream it served.
    served = metric_samples(web_a)
    route = (("method", "GET"), ("route", "/conversations/inference/{chat_id}"), ("status", "200"))
    assert served["chatbot_http_requests_total", route] >= 1
    assert served["chatbot_sse_active_streams", ()] == 0


def test_request_id_is_in_the_web_and_worker_logs(ops: Stack) -> None:
    web_a = ops.url("web_a")
    request_id = f"ops-{uuid.uuid4().hex[:12]}"
    chat_id = new_chat(web_a, ("Human", "Say hi."))
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "GET",
            f"{web_a}/conversations/inference/{chat_id}",
            headers={"X-Request-ID": request_id},
        ) as response,
    ):
        assert response.headers["x-request-id"] == request_id
        body = "".join(response.iter_text())
    generation_id = re.search(r"^id: ([0-9a-f-]{36}):", body, re.M).group(1)  # type: ignore[union-attr]

    def web_access_line() -> dict[str, Any] | None:
        for line in json_lines(ops.log("web_a")):
            if line.get("logger") == "web.access" and line.get("request_id") == request_id:
                return line
        return None

    wait_until(lambda: web_access_line() is not None, "the web access log line")
    access = web_access_line()
    assert access is not None
    assert access["route"] == "/conversations/inference/{chat_id}" and access["status"] == 200

    def worker_lines() -> list[dict[str, Any]]:
        return [line for name in ("worker_a", "worker_b") for line in json_lines(ops.log(name))]

    def done_line() -> bool:
        # Written just after the `done` event the client has already read: wait for it.
        return any(
            line.get("request_id") == request_id
            and line.get("generation_id") == generation_id
            and line["message"] == "generation done"
            for line in worker_lines()
        )

    wait_until(done_line, "the worker's 'generation done' line with both ids")
    # Every line the workers wrote after start-up is JSON, Celery's own included.
    assert any(line["logger"].startswith("celery.") for line in worker_lines())


def test_sigterm_on_web_ends_streams_with_server_shutdown(ops: Stack) -> None:
    web_c = ops.start_web("web_c")
    chat_id = new_chat(web_c, ("Human", STORY))
    stopped: list[float] = []

    def on_event(event: Any) -> None:
        if event.event == "message" and not stopped:
            ops.processes["web_c"].send_signal(signal.SIGTERM)
            stopped.append(time.monotonic())

    got = stream(web_c, f"/conversations/inference/{chat_id}", on_event=on_event)
    assert stopped, "no token arrived"
    # A final event from the server itself: a stream cut by uvicorn's graceful-shutdown
    # timeout would end with no event at all.
    assert got.events[-1].event == "error", [e.event for e in got.events]
    assert json.loads(got.events[-1].data)["error"]["code"] == "server_shutdown"
    process = ops.processes.pop("web_c")
    assert process.wait(10) in (0, -signal.SIGTERM)
    # The generation goes on without a listener, and ends (cancelled after the grace).
    wait_until(
        lambda: messages(ops.url("web_a"), chat_id)[-1]["role"] == "Assistant",
        "the generation to end",
        timeout=30,
    )


def _worker_holding(stack: Stack, generation_id: str) -> str:
    """The name of the stack process whose worker runs ``generation_id`` now."""
    celery = Celery("ops-inspect", broker=OPS_REDIS)
    active = celery.control.inspect(timeout=2.0, limit=2).active() or {}
    for node, tasks in active.items():
        if any(generation_id in json.dumps(task.get("args")) for task in tasks):
            return "worker_a" if node.startswith("worker@") else "worker_b"
    raise AssertionError(f"no worker runs {generation_id}: {active}")


def test_sigterm_on_a_worker_finishes_its_generation(ops: Stack) -> None:
    wait_idle(ops)
    web_b = ops.url("web_b")
    chat_id = new_chat(web_b, ("Human", STORY))
    result: dict[str, Received] = {}
    first = threading.Event()
    tokens: list[str] = []

    def on_event(event: Any) -> None:
        if event.event == "message":
            tokens.append(event.data)
            first.set()

    thread = threading.Thread(
        target=lambda: result.update(
            got=stream(web_b, f"/conversations/inference/{chat_id}", on_event=on_event)
        )
    )
    thread.start()
    assert first.wait(30)
    generation_id = _generation_of(ops, chat_id)
    holder = _worker_holding(ops, generation_id)
    process = ops.processes.pop(holder)
    process.send_signal(signal.SIGTERM)  # warm shutdown: finish the job, take no other
    at_signal = len(tokens)
    thread.join(60)
    got = result["got"]
    assert got.done is not None and got.done["status"] == "done", got.events[-1]
    assert len(got.tokens) > at_signal  # it was mid-answer, and the answer went on
    assert not got.named("restart")
    assert process.wait(30) == 0
    assert generation_row(ops, generation_id) == ("done", 1)
    assert not active_generations(ops)


def _generation_of(stack: Stack, chat_id: str) -> str:
    url = stack.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id::text FROM generations WHERE chat_id = %s ORDER BY created_at DESC",
            (chat_id,),
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_killed_worker_process_hands_its_generation_back(ops: Stack) -> None:
    wait_idle(ops)
    survivor = next(name for name in ("worker_a", "worker_b") if name in ops.processes)
    web_a = ops.url("web_a")
    chat_id = new_chat(web_a, ("Human", STORY))
    killed: list[int] = []

    def on_event(event: Any) -> None:
        if event.event == "message" and not killed:
            # The prefork child running the job dies (as if out of memory).
            main = ops.processes[survivor].pid
            children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
            os.kill(int(children[0]), signal.SIGKILL)
            killed.append(int(children[0]))

    got = stream(web_a, f"/conversations/inference/{chat_id}", on_event=on_event, timeout=90)
    assert killed
    names = [e.event for e in got.events]
    assert "restart" in names, names
    assert got.done is not None and got.done["status"] == "done"
    after_restart = names.index("restart")
    text = "".join(e.data for e in got.events[after_restart:] if e.event == "message")
    assert got.done["message"]["message"] == text  # clients drop what came before restart
    assert generation_row(ops, got.generation_id) == ("done", 2)
    assert not active_generations(ops)


def test_a_worker_killed_outright_has_its_generation_retried(ops: Stack) -> None:
    # Runs last: it kills the module's remaining worker (main process and child) with SIGKILL,
    # so nothing hands the job back: the web tier's sweep notices the stale heartbeat.
    wait_idle(ops)
    victim = next(name for name in ("worker_a", "worker_b") if name in ops.processes)
    web_a = ops.url("web_a")
    chat_id = new_chat(web_a, ("Human", STORY))
    killed: list[bool] = []

    def on_event(event: Any) -> None:
        if event.event == "message" and not killed:
            main = ops.processes[victim].pid
            children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
            for pid in [main, *map(int, children)]:
                os.kill(pid, signal.SIGKILL)
            killed.append(True)
            ops.processes.pop(victim).wait(timeout=10)
            ops.start_worker("worker_c")  # a replacement comes up, as a platform would do

    got = stream(web_a, f"/conversations/inference/{chat_id}", on_event=on_event, timeout=120)
    assert killed
    names = [e.event for e in got.events]
    assert "restart" in names and names[-1] == "done", names
    after_restart = names.index("restart")
    text = "".join(e.data for e in got.events[after_restart:] if e.event == "message")
    assert got.done is not None and got.done["message"]["message"] == text
    assert generation_row(ops, got.generation_id) == ("done", 2)
    assert not active_generations(ops)
