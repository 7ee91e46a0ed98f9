"""End-to-end fixtures: a real uvicorn server and a real Celery worker with the real model."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from shared.cli import web_command, worker_command
from shared.settings import Settings
from tests.conftest import ROOT, TEST_DATA_DIR

E2E_ENV = {
    "MAX_NEW_TOKENS": "200",
    "TEMPERATURE": "0",
    "STREAM_GRACE_S": "1",
    "QUEUE_TIMEOUT_S": "4",
    "KEEPALIVE_S": "1",
    "CONTEXT_LENGTH": "1024",
    "LOG_JSON": "true",
    "LOG_LEVEL": "INFO",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """Processes started for a test module, their environment and log files."""

    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, name: str = "web") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start_web(self, name: str = "web", **env: str) -> str:
        port = free_port()
        self._spawn(name, web_command(host="127.0.0.1", port=port), env)
        self.ports[name] = port
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), f"{name} to serve")
        return self.url(name)

    def start_worker(self, name: str = "worker", **env: str) -> None:
        before = set(self.live_workers())
        self._spawn(name, worker_command(name=f"{name}-{os.getpid()}@%h"), env)
        wait_until(
            lambda: set(self.live_workers()) - before, f"{name} to load the model", timeout=90
        )

    def live_workers(self) -> list[str]:
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        return [
            m.decode() for m in client.zrangebyscore("chatbot:workers", time.time() - 10, "+inf")
        ]

    def stop(self, name: str, sig: int = 15, timeout: float = 30) -> int:
        process = self.processes.pop(name)
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen(
                command, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
            )

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name, timeout=15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def pulled_model(model_settings: Settings) -> Path:
    """The default model, pulled once into the test data folder (idempotent)."""
    from shared.modelstore import resolve

    return resolve(model_settings).original_path


@pytest.fixture(scope="module")
def stack_env(postgres_url: str, pulled_model: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "MODEL"))}
    env.update(E2E_ENV)
    env.update(
        {
            "DATABASE_URL": postgres_url,
            "DATA_DIR": str(TEST_DATA_DIR),
            "REDIS_URL": os.environ["REDIS_URL"],
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextlib.contextmanager
def running_stack(env: dict[str, str], logs: Path) -> Iterator[Stack]:
    """One worker and one web server with ``env``, stopped on exit."""
    stack = Stack(env=env, logs=logs)
    try:
        stack.start_worker()
        stack.start_web()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A web server and one worker, for the whole module."""
    with running_stack(stack_env, tmp_path_factory.mktemp("logs")) as stack:
        yield stack
