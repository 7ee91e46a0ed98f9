"""The Starlette application: ``create_app(settings)`` wires routes, middleware and the
resources the lifespan opens (database engine, Redis, the token hub, the Celery client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from shared.db import engine_from_settings, make_sessionmaker
from shared.errors import ChatbotError, ServiceUnavailable
from shared.generations.lifecycle import Lifecycle
from shared.generations.sweep import SWEEP_INTERVAL_S, Sweeper
from shared.logs import configure_logging
from shared.queue import enqueue_generation, make_celery
from shared.redisconn import async_client, sync_client, web_pool_sizes
from shared.settings import Settings, get_settings
from web.http import clip
from web.middleware import ApiKeyMiddleware, RequestContextMiddleware, RequestLimitsMiddleware
from web.openapi import build_openapi, render_docs
from web.routes import chats, conversations, health, inference, openai, page
from web.state import AppState
from web.tokenhub import TokenHub

log = logging.getLogger(__name__)

VERSION = "0.1.0"
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def chatbot_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChatbotError)
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail
    # The path is the client's input: echo a bounded piece of it.
    method, path = clip(request.method, 20), clip(request.url.path)
    if exc.status_code == 404:
        message = f"no route matches {method} {path}"
    elif exc.status_code == 405:
        message = f"{method} is not allowed on {path}"
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def dependency_down(request: Request, exc: Exception) -> Response:
    """Redis or the database does not answer: a 503 that says which, not a 500."""
    which = "Redis" if isinstance(exc, RedisError) else "the database"
    log.error("%s is unavailable: %s", which, exc)
    error = ServiceUnavailable(f"{which} is unavailable; try again shortly")
    return JSONResponse(error.to_dict(), status_code=503, headers={"Retry-After": "5"})


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "internal error; see the server log"}},
        status_code=500,
    )


def _install_sigterm_hook(state: AppState) -> Callable[[], None]:
    """End open streams with a final event as soon as the server is told to stop.

    uvicorn waits for open responses (up to ``--timeout-graceful-shutdown``) before it
    runs the lifespan's shutdown, so the streams must hear about SIGTERM/SIGINT directly.
    uvicorn (0.29 and later, checked on 0.54) installs its handlers with
    ``signal.signal`` before the lifespan starts; this wraps them, so uvicorn's own
    handler still runs. Returns the function that puts the previous handlers back.
    """
    loop = asyncio.get_running_loop()
    installed: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(state.shutting_down.set)
            previous(signum, frame)

        with contextlib.suppress(ValueError):  # not the main thread (e.g. in tests)
            signal.signal(sig, handler)
            installed[sig] = previous

    def restore() -> None:
        for sig, previous in installed.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, previous)

    return restore


async def _sweep_forever(sweeper: Sweeper) -> None:
    """Look after generations nobody owns, with or without listeners."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await run_in_threadpool(sweeper.sweep)
        except Exception as exc:  # Redis or the database away: try again next time
            log.warning("generation sweep failed: %s", exc)


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app. ``settings`` defaults to the environment's."""
    settings = settings or get_settings()
    api_keys = settings.api_key_list  # a malformed API_KEYS fails here, before serving

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = engine_from_settings(settings)
        sessions = make_sessionmaker(engine)
        redis = async_client(settings)
        sync_redis = sync_client(settings, max_connections=web_pool_sizes(settings)[1])
        celery = make_celery(settings, "chatbot-web")
        one_producer = threading.Lock()

        def enqueue(generation_id: str, request_id: str | None) -> None:
            # One send at a time: a burst shares one broker connection (a send takes ~1 ms).
            with one_producer:
                enqueue_generation(celery, generation_id=generation_id, request_id=request_id)

        lifecycle = Lifecycle(
            settings=settings, sessions=sessions, redis=sync_redis, enqueue=enqueue
        )

        async def check_quiet(generation_id: str) -> None:
            await run_in_threadpool(lifecycle.ensure_terminal, uuid.UUID(generation_id))

        hub = TokenHub(redis, grace_s=settings.stream_grace_s, check_quiet=check_quiet)
        await hub.start()
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=redis,
            celery=celery,
            hub=hub,
            sync_redis=sync_redis,
            lifecycle=lifecycle,
        )
        app.state.chatbot = state
        restore_signals = _install_sigterm_hook(state)
        sweeper = asyncio.create_task(_sweep_forever(Sweeper(lifecycle)), name="generation-sweep")
        try:
            yield
        finally:
            restore_signals()
            state.shutting_down.set()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await hub.stop()
            await redis.aclose()
            sync_redis.close()
            engine.dispose()

    routes: list[BaseRoute] = [
        *chats.routes,
        *conversations.routes,
        *inference.routes,
        *health.routes,
        *openai.routes,
    ]
    document = build_openapi(routes, title="chatbot", version=VERSION, secured=bool(api_keys))

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(render_docs(document))

    routes += [
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
        *page.routes,
    ]
    route_paths: dict[object, str] = {
        route.endpoint: route.path for route in routes if isinstance(route, Route)
    }
    middleware = [
        Middleware(RequestContextMiddleware, route_paths=route_paths),
        Middleware(RequestLimitsMiddleware),
        Middleware(ApiKeyMiddleware, keys=api_keys),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            ChatbotError: chatbot_error,
            HTTPException: http_error,
            RedisError: dependency_down,
            OperationalError: dependency_down,
            # psycopg's ConnectionTimeout and QueryCanceled (DB_CONNECT_TIMEOUT_S,
            # DB_STATEMENT_TIMEOUT_S) are OperationalErrors; a pool wait past
            # DB_POOL_TIMEOUT_S is SQLAlchemy's TimeoutError.
            PoolTimeout: dependency_down,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )


def app_factory() -> Starlette:
    """Entry point for ``uvicorn --factory web.app:app_factory``: logging from settings."""
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    # uvicorn gave its loggers their own plain-text handlers before loading the app:
    # send their records through ours, so every line of the web log has one format.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # uvicorn's access log writes the raw query (where ?api_key= may be): it stays off;
    # web.access writes one line per request with the path only.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    return create_app(settings)
