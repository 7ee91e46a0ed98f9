"""Answer streams (SSE) and stopping them."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.chats.service import check_owner
from shared.errors import Conflict, NoWorker, SearchUnavailable
from shared.generations import service
from shared.generations.models import FINAL_STATUSES, Generation
from shared.generations.schemas import generation_info
from shared.logs import request_id_var
from shared.metrics import count_generation_ended
from shared.queue import enqueue_generation
from shared.tokenbus import (
    MODEL_ERROR_KEY,
    WORKER_STALE_S,
    AsyncTokenWriter,
    live_workers,
    mark_seen,
    owner_vanished,
    read_events,
    request_cancel,
)
from web.http import api, json_response, path_uuid, query_bool, tenant_of
from web.ratelimit import check_start_rate
from web.sse import Watchdog, parse_last_event_id, stream_generation
from web.state import AppState, app_state, run_db, run_in_session

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
}


async def _require_worker(state: AppState) -> None:
    """Raise the 503 that says why no worker can answer."""
    model_error = await state.redis.get(MODEL_ERROR_KEY)
    if model_error:
        reason = model_error.decode() if isinstance(model_error, bytes) else str(model_error)
        raise NoWorker(f"no model is available: the workers could not load it ({reason})")
    raise NoWorker(
        "no worker is running to answer: start one with 'chatbot worker' (or 'chatbot up')"
    )


async def _end_if_stuck(state: AppState, generation_id: uuid.UUID, quiet_s: float) -> None:
    """Fail a generation no worker took within the queue timeout, or whose worker vanished."""
    settings = state.settings
    if quiet_s < min(settings.queue_timeout_s, WORKER_STALE_S):
        return
    # A worker process that died (even SIGKILL) stops beating: its answer is lost.
    vanished = await owner_vanished(state.redis, str(generation_id))
    if quiet_s < settings.queue_timeout_s and not vanished:
        return

    def work(session: Session) -> tuple[str, str, str] | None:
        generation = session.get(Generation, generation_id)
        if generation is None:
            return None
        if generation.status == "queued":
            code, message = (
                "no_worker",
                (
                    f"no worker started this answer within {settings.queue_timeout_s:g} s: "
                    "the workers are down or all busy"
                ),
            )
        elif generation.status == "running" and (
            vanished or quiet_s > settings.generation_time_limit_s + 60
        ):
            code, message = "worker_lost", "the worker answering this stopped responding"
        else:
            return None
        # Conditional on the status just read: a worker that moved it on meanwhile wins.
        if service.fail(
            session,
            generation_id=generation_id,
            code=code,
            message=message,
            from_=(generation.status,),
        ):
            return generation.kind, code, message
        return None

    ended = await run_in_session(state.sessions, work)
    if ended is not None:
        kind, code, message = ended
        writer = AsyncTokenWriter(state.redis, str(generation_id), ttl_s=settings.stream_ttl_s)
        await writer.append("error", {"error": {"code": code, "message": message}})
        await count_generation_ended(state.redis, kind=kind, status="error")


def _streaming(
    request: Request, state: AppState, generation_id: uuid.UUID, after: str | None
) -> StreamingResponse:
    async def check(quiet_s: float) -> None:
        await _end_if_stuck(state, generation_id, quiet_s)

    interval = min(1.0, state.settings.queue_timeout_s / 4)
    body = stream_generation(
        redis=state.redis,
        hub=state.hub,
        generation_id=str(generation_id),
        after=after,
        keepalive_s=state.settings.keepalive_s,
        watchdog=Watchdog(check=check, interval_s=interval),
        shutting_down=state.shutting_down,
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def _inference(request: Request, *, kind: str) -> Response:
    state = app_state(request)
    chat_id = path_uuid(request, "chat_id", what="chat")
    regenerate = query_bool(request, "regenerate")
    resume = parse_last_event_id(request.headers.get("last-event-id"))
    tenant = tenant_of(request)
    await run_db(request, lambda s: check_owner(s, chat_id=chat_id, owner=tenant))

    if resume is not None:
        generation_id, after = resume
        found = await run_db(
            request,
            lambda s: _snapshot(
                service.find_for_resume(s, chat_id=chat_id, generation_id=generation_id)
            ),
        )
        if found is not None:
            if found["status"] in FINAL_STATUSES:
                tail = await read_events(state.redis, str(generation_id), after=after)
                if not tail:
                    # The client has everything: 204 stops EventSource from reconnecting.
                    return Response(status_code=204)
            return _streaming(request, state, generation_id, after)

    if kind == "internet" and not state.settings.serpapi_api_key:
        raise SearchUnavailable(
            "internet answers need a search key: set SERPAPI_API_KEY (https://serpapi.com)"
        )
    request_id = request_id_var.get()
    started: dict[str, Any] | None
    await check_start_rate(state.redis, tenant, state.settings)
    if await live_workers(state.redis):
        # One short transaction: attach to the running answer or queue a new one.
        started = await run_db(
            request,
            lambda s: _start(
                s,
                chat_id=chat_id,
                kind=kind,
                model=state.settings.model,
                regenerate=regenerate,
                request_id=request_id,
            ),
        )
    else:
        # No worker: a running answer can still be followed, a new one cannot start.
        started = await run_db(request, lambda s: _peek_active(s, chat_id))
        if started is None:
            await _require_worker(state)
    assert started is not None
    if started["created"]:
        generation_id = started["id"]
        # Count the requester as a listener before any worker can look.
        await mark_seen(state.redis, [generation_id], grace_s=state.settings.stream_grace_s)
        writer = AsyncTokenWriter(state.redis, generation_id, ttl_s=state.settings.stream_ttl_s)
        await writer.append("generation", started["info"])
        enqueue_generation(
            state.celery,
            generation_id=generation_id,
            request_id=request_id,
            expires_s=state.settings.queue_timeout_s,
        )
        log.info("generation queued", extra={"generation_id": generation_id, "kind": kind})
    return _streaming(request, state, uuid.UUID(started["id"]), None)


def _snapshot(generation: Generation | None) -> dict[str, Any] | None:
    if generation is None:
        return None
    return {
        "id": str(generation.id),
        "status": generation.status,
        "created": False,
        "info": generation_info(generation),
    }


def _peek_active(session: Session, chat_id: uuid.UUID) -> dict[str, Any] | None:
    return _snapshot(service.active_for_chat(session, chat_id=chat_id))


def _start(session: Session, **kwargs: Any) -> dict[str, Any]:
    started = service.start_or_attach(session, **kwargs)
    snapshot = _snapshot(started.generation)
    assert snapshot is not None
    snapshot["created"] = started.created
    return snapshot


REGENERATE = {
    "description": "true: answer the last Human message again (keeps the old answer).",
    "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]},
}
STREAM_DOC = (
    "Server-Sent Events. Unnamed events carry token text; named events: generation, "
    "sources (internet only), done, error, restart. Every event has an id "
    "'<generation id>:<entry id>'; reconnect with Last-Event-ID to resume."
)


@api(
    summary="Stream the answer to the chat's last Human message (SSE)",
    description=STREAM_DOC,
    content_type="text/event-stream",
    query={"regenerate": REGENERATE},
    headers={"Last-Event-ID": "Resume after this event."},
    extra_responses={204: "The stream named by Last-Event-ID has ended"},
    errors=[404, 409, 422, 429, 503],
)
async def inference(request: Request) -> Response:
    return await _inference(request, kind="chat")


@api(
    summary="Stream an answer grounded in web search, with numbered citations (SSE)",
    description=STREAM_DOC,
    content_type="text/event-stream",
    query={"regenerate": REGENERATE},
    headers={"Last-Event-ID": "Resume after this event."},
    extra_responses={204: "The stream named by Last-Event-ID has ended"},
    errors=[404, 409, 422, 429, 503],
)
async def inference_internet(request: Request) -> Response:
    return await _inference(request, kind="internet")


@api(
    summary="Stop the chat's running answer (the partial answer is kept, marked cancelled)",
    response_example={"generation_id": "…", "status": "cancelled"},
    extra_responses={
        202: {
            "description": "The running worker stops at its next token",
            "content": {
                "application/json": {"example": {"generation_id": "…", "status": "cancelling"}}
            },
        }
    },
    errors=[404, 409],
)
async def stop(request: Request) -> JSONResponse:
    state = app_state(request)
    chat_id = path_uuid(request, "chat_id", what="chat")
    tenant = tenant_of(request)
    await run_db(request, lambda s: check_owner(s, chat_id=chat_id, owner=tenant))
    active = await run_db(request, lambda s: _peek_active(s, chat_id))
    if active is None:
        raise Conflict(f"chat {chat_id} has no answer in progress")
    generation_id = uuid.UUID(active["id"])
    await request_cancel(state.redis, active["id"], ttl_s=state.settings.stream_ttl_s)
    cancelled = await run_db(
        request, lambda s: service.cancel_queued(s, generation_id=generation_id)
    )
    if cancelled:
        # No worker had started it: end its stream here.
        writer = AsyncTokenWriter(state.redis, active["id"], ttl_s=state.settings.stream_ttl_s)
        await writer.append(
            "done", {"status": "cancelled", "message": None, "generation_id": active["id"]}
        )
        kind = active["info"]["kind"]
        await count_generation_ended(state.redis, kind=kind, status="cancelled")
        return json_response({"generation_id": active["id"], "status": "cancelled"})
    return json_response({"generation_id": active["id"], "status": "cancelling"}, status_code=202)


routes = [
    Route("/conversations/inference/{chat_id}", inference, methods=["GET"]),
    Route("/conversations/inference_internet/{chat_id}", inference_internet, methods=["GET"]),
    Route("/conversations/stop/{chat_id}", stop, methods=["POST"]),
]
