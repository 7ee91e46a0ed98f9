"""Real local HTTP servers for the internet pipeline tests: web pages and a fake SerpApi."""

from __future__ import annotations

import json
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TEST_API_KEY = "test-serpapi-key-0123456789"


@dataclass
class Reply:
    """What the server answers on one path."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    send_length: bool = True


@dataclass
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


Handler = Callable[[SeenRequest], Reply]


class LocalServer:
    """A threaded HTTP/1.0 server on a loopback address that answers from a route table
    and counts what it was asked."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply | Handler] = {}
        self.requests: list[SeenRequest] = []
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        owner = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                seen = SeenRequest(
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={key.lower(): value for key, value in self.headers.items()},
                )
                with owner._lock:
                    owner.requests.append(seen)
                    owner.hits[parts.path] += 1
                route = owner.routes.get(parts.path)
                if route is None:
                    reply = Reply(status=404, body=b"<html><body>not found</body></html>")
                elif isinstance(route, Reply):
                    reply = route
                else:
                    reply = route(seen)
                if reply.delay_s and owner._stopping.wait(reply.delay_s):
                    return
                try:
                    self.send_response(reply.status)
                    if reply.content_type is not None:
                        self.send_header("Content-Type", reply.content_type)
                    if reply.send_length:
                        self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to do

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # the default 5 drops SYNs when many pages load at once

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up mid-request is expected here

        self._server = Server((host, 0), RequestHandler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server."""
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def page(self, path: str, html: str, **options: Any) -> str:
        """Serve ``html`` at ``path``; returns its URL."""
        self.routes[path] = Reply(body=html.encode("utf-8"), **options)
        return self.url(path)

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class FakeSerpApi(LocalServer):
    """Answers ``/search`` (and ``/search.json``) like SerpApi, with a settable reply."""

    def __init__(self) -> None:
        super().__init__()
        self.reply: Reply = self.json({"organic_results": []})
        self.routes["/search"] = self._answer
        self.routes["/search.json"] = self._answer

    @staticmethod
    def json(data: dict[str, Any], status: int = 200, delay_s: float = 0.0) -> Reply:
        """A JSON reply."""
        return Reply(
            status=status,
            body=json.dumps(data).encode("utf-8"),
            content_type="application/json; charset=utf-8",
            delay_s=delay_s,
        )

    def respond(self, data: dict[str, Any], status: int = 200, delay_s: float = 0.0) -> None:
        """Answer every search with ``data``."""
        self.reply = self.json(data, status=status, delay_s=delay_s)

    def _answer(self, seen: SeenRequest) -> Reply:
        return self.reply

    @property
    def searches(self) -> int:
        """How many searches reached the server."""
        return self.hits["/search"] + self.hits["/search.json"]
