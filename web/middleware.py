"""Pure ASGI middleware: request ids, API keys, metrics and access logs."""

from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import Unauthorized
from shared.logs import request_id_var
from web import metrics
from web.openai_format import error_body

log = logging.getLogger("web.access")

PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/")
# The chat page's files hold no data: the page asks for a key when the API answers 401.
PUBLIC_PREFIXES = ("/static/",)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-ID``, kept if the client sent a sane one),
    counts it in the metrics and writes one access log line."""

    def __init__(self, app: ASGIApp, *, route_paths: dict[object, str]) -> None:
        self.app = app
        self.route_paths = route_paths  # endpoint -> path template, for metric labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = self.route_paths.get(scope.get("endpoint"), "unmatched")
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(scope["method"], route, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route).observe(elapsed)
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 1), "route": route},
            )
            request_id_var.reset(token)


def _first_query_value(query: bytes, name: str) -> str:
    for name_value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name_value[0] == name:
            return name_value[1]
    return ""


class ApiKeyMiddleware:
    """When API keys are configured, every route but health, metrics and docs needs one."""

    def __init__(self, app: ASGIApp, *, keys: frozenset[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.keys
            or scope["path"] in PUBLIC_PATHS
            or scope["path"].startswith(PUBLIC_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer":
            # Browsers' EventSource cannot send headers: streams may carry ?api_key=.
            key = self._query_key(scope) if scope["method"] == "GET" else ""
        if key and any(secrets.compare_digest(key.strip(), known) for known in self.keys):
            await self.app(scope, receive, send)
            return
        error = Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>' "
            "(or ?api_key=<key> on a GET stream)"
        )
        body = error.to_dict()
        if scope["path"].startswith("/v1/"):  # the OpenAI API's error object
            body = error_body(status=401, code="invalid_api_key", message=error.message)
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    @staticmethod
    def _query_key(scope: Scope) -> str:
        return _first_query_value(scope.get("query_string", b""), "api_key")
