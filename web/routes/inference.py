"""Answer streams (SSE) and stopping them. The rules of a generation's life are in
``shared.generations.lifecycle``: these routes parse, call it and render."""

from __future__ import annotations

import logging
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.chats.service import check_owner
from shared.errors import SearchUnavailable
from shared.generations.models import FINAL_STATUSES
from shared.logs import request_id_var
from shared.tokenbus import read_events
from web.http import api, json_response, path_uuid, query_bool, tenant_of
from web.ratelimit import check_start_rate
from web.sse import parse_last_event_id, stream_generation
from web.state import AppState, app_state, run_db

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
}


def _streaming(state: AppState, generation_id: uuid.UUID, after: str | None) -> Response:
    body = stream_generation(
        redis=state.redis,
        hub=state.hub,
        generation_id=str(generation_id),
        after=after,
        keepalive_s=state.settings.keepalive_s,
        shutting_down=state.shutting_down,
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def _resume(
    state: AppState, tenant: str, chat_id: uuid.UUID, generation_id: uuid.UUID, after: str
) -> Response | None:
    """The rest of the stream a ``Last-Event-ID`` names; None if it names nothing here."""
    lifecycle = state.lifecycle
    found = await run_in_threadpool(
        lifecycle.find, chat_id=chat_id, generation_id=generation_id, owner=tenant
    )
    if found is None:
        return None
    if found.status in FINAL_STATUSES:
        # A stream that lost its ending (Redis restarted) gets it back from the database.
        await run_in_threadpool(lifecycle.ensure_terminal, generation_id)
        if not await read_events(state.redis, str(generation_id), after=after):
            # The client has everything: 204 stops EventSource from reconnecting.
            return Response(status_code=204)
    return _streaming(state, generation_id, after)


async def _inference(request: Request, *, kind: str) -> Response:
    state = app_state(request)
    chat_id = path_uuid(request, "chat_id", what="chat")
    regenerate = query_bool(request, "regenerate")
    resume = parse_last_event_id(request.headers.get("last-event-id"))
    tenant = tenant_of(request)
    resumed = resume and await _resume(state, tenant, chat_id, *resume)
    if resumed is not None:
        return resumed
    if kind == "internet" and not state.settings.serpapi_api_key:
        # Another tenant's chat is a 404 whatever the configuration.
        await run_db(request, lambda s: check_owner(s, chat_id=chat_id, owner=tenant))
        raise SearchUnavailable(
            "internet answers need a search key: set SERPAPI_API_KEY (https://serpapi.com)"
        )
    await check_start_rate(state.redis, tenant, state.settings)
    started = await run_in_threadpool(
        state.lifecycle.start,
        owner=tenant,
        chat_id=chat_id,
        kind=kind,
        regenerate=regenerate,
        request_id=request_id_var.get(),
    )
    return _streaming(state, started.generation_id, None)


REGENERATE = {
    "description": "true: answer the last Human message again (keeps the old answer).",
    "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]},
}
STREAM_DOC = (
    "Server-Sent Events. Unnamed events carry token text; named events: generation, "
    "queue, sources (internet only), done, error, restart. Every event has an id "
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
    stopped = await run_in_threadpool(
        state.lifecycle.stop, chat_id=chat_id, owner=tenant_of(request)
    )
    body = {"generation_id": str(stopped.generation_id), "status": stopped.status}
    return json_response(body, status_code=200 if stopped.status == "cancelled" else 202)


routes = [
    Route("/conversations/inference/{chat_id}", inference, methods=["GET"]),
    Route("/conversations/inference_internet/{chat_id}", inference_internet, methods=["GET"]),
    Route("/conversations/stop/{chat_id}", stop, methods=["POST"]),
]
