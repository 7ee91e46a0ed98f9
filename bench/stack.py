"""A real stack for benchmarks: web server and N worker processes on this host.

Postgres (a fresh database, like the tests') when it answers at TEST_POSTGRES_ADMIN, else
SQLite in a temp folder; a Redis database leased like the tests' (so a benchmark never
takes a test run's jobs); the default model from .pytest-data; greedy sampling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from shared.cli import web_command, worker_command, worker_pool  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.workers import WORKER_HEARTBEAT_S, WORKERS_KEY  # noqa: E402
from tests.redis_lease import lease_redis_db  # noqa: E402
from worker.hostload import MIN_WINDOW_S  # noqa: E402

POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://root@127.0.0.1:5432/test")
QUESTION = "What is the capital of France?"
LONG_QUESTION = "Write a long story about a lighthouse keeper and the sea, in many paragraphs."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, redis.RedisError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: timed out waiting for {what}")


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A migrated database URL, dropped afterwards."""
    try:
        import psycopg

        name = f"chatbot_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:  # no Postgres here: SQLite
        folder = Path(tempfile.mkdtemp(prefix="chatbot-bench-"))
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Stack:
    env: dict[str, str]
    base: str = ""
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["REDIS_URL"])

    @property
    def pool(self) -> str:
        """The workers' pool, as ``chatbot up`` chooses it (``shared.cli.worker_pool``):
        solo with GPU layers, else prefork."""
        gpu_layers = int(self.env.get("GPU_LAYERS") or 0)
        return worker_pool(Settings(gpu_layers=gpu_layers, _env_file=None))  # type: ignore[call-arg]

    def live_workers(self) -> int:
        return int(self.redis.zcount(WORKERS_KEY, time.time() - 10, "+inf"))

    def settle(self) -> None:
        """Wait until every worker has sampled the host's load since now, and a sampling
        window more (``worker.hostload.MIN_WINDOW_S``): what ran until now (the engine
        alone's process, answers that just ended) then no longer counts as a busy
        neighbour when the next answer starts, which would start it on fewer threads. An
        idle worker samples with each heartbeat, so this takes up to ~2.3 s."""
        since = time.time()
        deadline = time.monotonic() + 3 * WORKER_HEARTBEAT_S
        while time.monotonic() < deadline:
            # Every worker beat since (an idle one samples the load with its beat).
            if self.redis.zcard(WORKERS_KEY) and not self.redis.zcount(WORKERS_KEY, "-inf", since):
                break
            time.sleep(0.05)
        time.sleep(MIN_WINDOW_S + 0.05)

    @cached_property
    def served_model(self) -> str:
        """The model the workers serve (``GET /v1/models``), asked once."""
        return str(httpx.get(f"{self.base}/v1/models").json()["data"][0]["id"])

    def warm_up(self, text: str, max_tokens: int) -> None:
        """A short answer to ``text`` through the whole stack (the OpenAI route, which takes
        ``max_tokens``; the same queue and worker), so that the next answer finds the
        worker, the web and the databases busy a moment ago rather than idle."""
        body = {
            "model": self.served_model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
        }
        httpx.post(f"{self.base}/v1/chat/completions", json=body, timeout=120).raise_for_status()

    def add_workers(self, count: int) -> None:
        """Start ``count`` more worker processes and wait until each has its model."""
        target = len(self.workers) + count
        for _ in range(count):
            name = f"bench{len(self.workers) + 1}-{os.getpid()}@%h"
            self.workers.append(
                subprocess.Popen(
                    worker_command(name=name, log_level="WARNING", pool=self.pool),
                    env=self.env,
                    cwd=ROOT,
                )
            )
        wait_for(lambda: self.live_workers() >= target, f"{target} workers to load the model")

    def new_chat(self, message: str = QUESTION) -> str:
        chat_id = str(httpx.post(f"{self.base}/chats/create", json={"name": "b"}).json()["id"])
        httpx.post(
            f"{self.base}/conversations/create",
            json={"chat_id": chat_id, "role": "Human", "message": message},
        ).raise_for_status()
        return chat_id

    def stop(self) -> None:
        processes = [*self.workers, *([self.web] if self.web else [])]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def running(*, workers: int = 1, **env: str) -> Iterator[Stack]:
    """A migrated database, a web server and ``workers`` ready worker processes."""
    with database() as url:
        environment = {
            **os.environ,
            "DATA_DIR": str(ROOT / ".pytest-data"),
            "DATABASE_URL": url,
            "REDIS_URL": lease_redis_db(),
            "TEMPERATURE": "0",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        python = sys.executable
        for step in (["models", "pull", "--quiet"], ["migrate"]):
            subprocess.run(
                [python, "-m", "shared.cli", *step], env=environment, cwd=ROOT, check=True
            )
        stack = Stack(env=environment)
        port = free_port()
        stack.base = f"http://127.0.0.1:{port}"
        try:
            stack.web = subprocess.Popen(
                web_command(host="127.0.0.1", port=port, log_level="warning"),
                env=environment,
                cwd=ROOT,
            )
            wait_for(lambda: httpx.get(f"{stack.base}/healthz").status_code == 200, "the web")
            if workers:
                stack.add_workers(workers)
                wait_for(lambda: httpx.get(f"{stack.base}/readyz").status_code == 200, "ready")
            yield stack
        finally:
            stack.stop()


@dataclass
class Answer:
    """One streamed answer as a client saw it (perf_counter times) and the done event."""

    sent: float
    headers: float | None = None
    generation_event: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    events: dict[str, int] = field(default_factory=dict)
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    status: int = 0
    retry_after: str | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)  # what others spent meanwhile

    @property
    def completion_tokens(self) -> int:
        return int((self.done or {}).get("usage", {}).get("completion_tokens") or 0)

    def client_tokens_per_s(self) -> float | None:
        """Decode rate as the client saw it: tokens after the first over the time they took."""
        if self.first_token is None or self.last_token is None or self.completion_tokens < 2:
            return None
        seconds = self.last_token - self.first_token
        return (self.completion_tokens - 1) / seconds if seconds > 0 else None


async def stream_answer(client: httpx.AsyncClient, base: str, chat_id: str) -> Answer:
    answer = Answer(sent=time.perf_counter())
    async with client.stream("GET", f"{base}/conversations/inference/{chat_id}") as response:
        answer.headers = time.perf_counter()
        answer.status = response.status_code
        if response.status_code != 200:
            answer.retry_after = response.headers.get("retry-after")
            body = json.loads(await response.aread() or b"{}")
            answer.error = body.get("error", {"code": f"http_{response.status_code}"})
            return answer
        await _read_events(answer, response.aiter_lines())
    return answer


async def _read_events(answer: Answer, lines: AsyncIterator[str]) -> None:
    """Record each SSE event of ``lines`` on ``answer`` as it arrives."""
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            now = time.perf_counter()
            name = event or "token"
            answer.events[name] = answer.events.get(name, 0) + 1
            if name == "token":
                answer.first_token = answer.first_token or now
                answer.last_token = now
            elif name == "generation":
                answer.generation_event = now
            elif name == "done":
                answer.done = json.loads(line[6:])
            elif name == "error":
                answer.error = json.loads(line[6:]).get("error")
        elif line == "":
            event = None


async def read_answer(base: str, chat_id: str) -> Answer:
    """``stream_answer`` with a bare HTTP/1.1 client (one connection, chunked SSE read off
    the socket): on a 2-core machine the client shares the cores with what it measures,
    and httpx's per-line work took 7% of a core beside two workers (py-spy)."""
    host, _, port = base.removeprefix("http://").partition(":")
    answer = Answer(sent=time.perf_counter())
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        request = f"GET /conversations/inference/{chat_id} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        answer.headers = time.perf_counter()
        answer.status = int(head.split(b" ", 2)[1])
        if answer.status != 200:
            answer.error = {"code": f"http_{answer.status}"}
            return answer
        await _read_events(answer, _chunked_lines(reader))
    finally:
        writer.close()
    return answer


async def _chunked_lines(reader: asyncio.StreamReader) -> AsyncIterator[str]:
    """The lines of a chunked HTTP body as they arrive."""
    rest = b""
    while size := int((await reader.readline()).split(b";")[0], 16):
        data = rest + await reader.readexactly(size)
        await reader.readexactly(2)  # the chunk's CRLF
        *lines, rest = data.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode()
    if rest:
        yield rest.decode()


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
