"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.tokenbus import live_workers
from web import metrics
from web.http import api
from web.state import app_state, run_db


@api(summary="Liveness: the process serves requests", response_example={"status": "ok"})
async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _check(coro: Any) -> dict[str, Any]:
    try:
        detail = await asyncio.wait_for(coro, timeout=2.0)
        return {"ok": True, **(detail or {})}
    except Exception as exc:  # a readiness probe reports every failure, whatever its type
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


@api(
    summary="Readiness: database, Redis and at least one worker with a model",
    errors=[503],
    response_example={"status": "ready", "checks": {"database": {"ok": True}}},
)
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request)

    async def database() -> None:
        await run_db(request, lambda s: s.execute(text("SELECT 1")))

    async def redis() -> None:
        await state.redis.ping()

    async def workers() -> dict[str, Any]:
        alive = await live_workers(state.redis)
        if not alive:
            raise RuntimeError("no worker with a loaded model has checked in")
        return {"workers": len(alive)}

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
    state = app_state(request)
    await metrics.refresh(state)
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
