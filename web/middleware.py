"""Pure ASGI middleware: request ids, API keys, metrics and access logs."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import uuid
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ChatbotError, HeadersTooLarge, Unauthorized, UriTooLong
from shared.logs import request_id_var
from shared.settings import DEFAULT_TENANT, ApiKey
from web import metrics
from web.http import clip
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
            # The path only (never the query, where ?api_key= may be), clipped.
            log.info(
                "%s %s %s",
                clip(scope["method"], 20),
                clip(scope["path"]),
                status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 1), "route": route},
            )
            request_id_var.reset(token)


MAX_TARGET_BYTES = 8 * 1024  # path and query
MAX_HEADER_BYTES = 32 * 1024  # all header names and values together


class RequestLimitsMiddleware:
    """Refuses, as JSON, a request target or headers larger than any client of this API
    sends (414, 431). Larger ones still (beyond the HTTP parser's own limits) are cut by
    uvicorn with a plain-text 400 before any app code runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error: ChatbotError | None = None
            target = len(scope.get("raw_path") or scope["path"].encode()) + len(
                scope.get("query_string", b"")
            )
            if target > MAX_TARGET_BYTES:
                error = UriTooLong(f"the URL is longer than {MAX_TARGET_BYTES} bytes")
            elif sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
                error = HeadersTooLarge(f"the headers are larger than {MAX_HEADER_BYTES} bytes")
            if error is not None:
                response = JSONResponse(error.to_dict(), status_code=error.status_code)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _first_query_value(query: bytes, name: str) -> str:
    for name_value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name_value[0] == name:
            return name_value[1]
    return ""


class ApiKeyMiddleware:
    """Finds the request's tenant and puts it on ``scope["state"]["tenant"]``.

    When API keys are configured, every route but health, metrics and docs needs one, and
    the tenant is the key's name. Without keys every request is ``DEFAULT_TENANT``.
    """

    def __init__(self, app: ASGIApp, *, keys: tuple[ApiKey, ...]) -> None:
        self.app = app
        # Compare digests: equal lengths, so the comparison time says nothing about a key.
        self.keys = [(key.name, _digest(key.secret)) for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.keys:
            state["tenant"] = DEFAULT_TENANT
            await self.app(scope, receive, send)
            return
        if scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer":
            # Browsers' EventSource cannot send headers: streams may carry ?api_key=.
            key = self._query_key(scope) if scope["method"] == "GET" else ""
        tenant = self._tenant(key.strip()) if key.strip() else None
        if tenant is not None:
            state["tenant"] = tenant
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

    def _tenant(self, key: str) -> str | None:
        """The name of the key, checking every key so the time taken names none."""
        digest = _digest(key)
        found = None
        for name, known in self.keys:
            if hmac.compare_digest(digest, known):
                found = name
        return found

    @staticmethod
    def _query_key(scope: Scope) -> str:
        return _first_query_value(scope.get("query_string", b""), "api_key")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()
