"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.workers import live_workers, model_error
from web import metrics
from web.http import api
from web.state import app_state, run_db

if TYPE_CHECKING:
    from celery import Celery

#: How long the Celery ping waits for a worker to answer (only when no worker beats).
PING_TIMEOUT_S = 1.0


@api(summary="Liveness: the process serves requests", response_example={"status": "ok"})
async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _check(coro: Any) -> dict[str, Any]:
    try:
        detail = await asyncio.wait_for(coro, timeout=2.0)
        return {"ok": True, **(detail or {})}
    except Exception as exc:  # a readiness probe reports every failure, whatever its type
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def ping_workers(celery: Celery, *, timeout: float = PING_TIMEOUT_S) -> int:
    """How many Celery workers answer a broadcast ping (blocking: run it in a thread).

    Returns as soon as one answers, else after ``timeout``."""
    replies = celery.control.inspect(timeout=timeout, limit=1).ping()
    return len(replies or {})


@api(
    summary="Readiness: database, Redis and at least one worker with a model",
    errors=[503],
    response_example={
        "status": "ready",
        "checks": {
            "database": {"ok": True},
            "redis": {"ok": True},
            "workers": {"ok": True, "workers": 1},
        },
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database and Redis answer and a worker process with a loaded model
    has beaten within the last few seconds.

    The worker check is the heartbeat set that each worker process with a model keeps
    fresh (one Redis read: readiness stays fast when healthy). A Celery ``ping`` is only
    the secondary signal, sent when no heartbeat is fresh, to say why (workers that run
    but have no model, or no worker at all). It is not the primary check because a busy
    ``--pool=solo`` worker (GPU) cannot answer pings until its generation ends, and
    because a broadcast on every probe costs more than a read.
    """
    state = app_state(request)

    async def database() -> None:
        await run_db(request, lambda s: s.execute(text("SELECT 1")))

    async def redis() -> None:
        await state.redis.ping()

    async def workers() -> dict[str, Any]:
        alive = await live_workers(state.redis)
        if alive:
            return {"workers": len(alive)}
        answering = await asyncio.to_thread(ping_workers, state.celery)
        reason = "no worker with a loaded model has checked in"
        if answering:
            reason += "; a Celery worker answers ping, but it has no model loaded"
            if message := await model_error(state.redis):
                reason += f" ({message})"
        else:
            reason += "; no Celery worker answers ping"
        raise RuntimeError(reason)

    db_check, redis_check, worker_check = await asyncio.gather(
        _check(database()), _check(redis()), _check(workers())
    )
    checks = {"database": db_check, "redis": redis_check, "workers": worker_check}
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@api(summary="Prometheus metrics", content_type="text/plain")
async def metrics_endpoint(request: Request) -> Response:
    body = await metrics.render(app_state(request).redis)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
