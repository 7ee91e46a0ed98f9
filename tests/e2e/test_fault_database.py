"""A database that accepts connections but never answers: every API request that needs it
gets a 503 JSON error within a bounded time, never a hang, and readiness says so.

The web server is a real uvicorn with the default database timeouts; its DATABASE_URL
points at a local TCP listener that accepts every connection and never sends a byte (a
hung Postgres, or a proxy in front of a dead one).
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

# A not-a-hang guard, far above the defaults (connect 5 s): it checks that an answer comes,
# not how fast.
ANSWER_WITHIN_S = 30.0


@dataclass
class SilentServer:
    """Accepts TCP connections and never answers, until closed."""

    sock: socket.socket
    accepted: list[socket.socket] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture(scope="module")
def silent_db() -> Iterator[SilentServer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = SilentServer(sock)
    threading.Thread(target=server.serve, daemon=True).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def web_on_silent_db(
    stack_env: dict[str, str], silent_db: SilentServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    url = f"postgresql://chatbot:secret@127.0.0.1:{silent_db.port}/chatbot"
    env = {k: v for k, v in stack_env.items() if not k.startswith("DB_")}
    stack = Stack(env={**env, "DATABASE_URL": url}, logs=tmp_path_factory.mktemp("silent-db"))
    try:
        yield stack.start_web()
    finally:
        stack.close()


def call(base: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{base}{path}", json=body, timeout=ANSWER_WITHIN_S)


def test_api_requests_answer_503_json_when_the_database_never_answers(
    web_on_silent_db: str, silent_db: SilentServer
) -> None:
    chat_id = uuid.uuid4()
    requests = [
        ("GET", "/chats/", None),
        ("POST", "/chats/create", {"name": "never saved"}),
        ("GET", f"/chats/{chat_id}", None),
        (
            "POST",
            "/conversations/create",
            {"chat_id": str(chat_id), "role": "Human", "message": "hi"},
        ),
        ("GET", f"/conversations/inference/{chat_id}", None),
    ]
    # At once, as clients would send them; each must answer on its own.
    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(lambda r: call(web_on_silent_db, *r), requests))

    for (method, path, _), response in zip(requests, responses, strict=True):
        assert response.status_code == 503, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/json"), path
        error = response.json()["error"]
        assert error["code"] == "unavailable", path
        assert "database" in error["message"], path
    assert silent_db.accepted  # the requests did reach the silent server

    ready = httpx.get(f"{web_on_silent_db}/readyz", timeout=ANSWER_WITHIN_S)
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["ok"] is False
    # The server is not stuck: it still answers what needs no database.
    assert httpx.get(f"{web_on_silent_db}/healthz", timeout=ANSWER_WITHIN_S).status_code == 200
