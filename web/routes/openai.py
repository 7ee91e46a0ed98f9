"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

A completion request is a chat like any other: its messages are saved as a new chat
(named ``openai: <first words>``), a generation is queued for it on the same queue, run by
the same workers and relayed from the same token bus as ``/conversations/inference``. So
it shows in the chat API afterwards, and its stream can be resumed: every chunk carries an
SSE ``id`` (``<generation id>:<position>``), and the same request sent again with
``Last-Event-ID`` continues after that chunk (beyond OpenAI's API).

The request's system (and developer) messages are not stored as chat messages: joined,
they replace the server's ``SYSTEM_PROMPT`` for this generation (``generations.params``),
with the sampling fields (``temperature``, ``top_p``, ``max_tokens`` capped at
``MAX_NEW_TOKENS``, ``stop``, ``seed``).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shared import workers
from shared.chats.models import Conversation
from shared.chats.repository import ConversationRepository
from shared.chats.schemas import ChatCreate
from shared.chats.service import check_owner, create_chat, delete_chat
from shared.db import utcnow
from shared.errors import (
    BadRequest,
    ChatbotError,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    ServiceUnavailable,
)
from shared.generations.models import FINAL_STATUSES
from shared.generations.params import GenerationParams
from shared.generations.repository import GenerationRepository
from shared.generations.waiting import no_worker_error
from shared.logs import request_id_var
from shared.tokenbus import Event
from web import openai_format as fmt
from web.http import api, parse_body, tenant_of
from web.ratelimit import check_start_rate
from web.routes.inference import SSE_HEADERS
from web.sse import Signal, follow_generation, parse_last_event_id
from web.state import AppState, app_state, run_db, run_in_session

ROLES = {"user": "Human", "assistant": "Assistant"}
CHAT_NAME_WORDS = 8
DONE = b"data: [DONE]\n\n"
# A comment line with no blank line after it: the openai SDK's SSE decoder (checked on
# 3.57) turns a blank line after an id into an empty event it cannot parse; a lone comment
# line is skipped by it and by every SSE parser.
KEEPALIVE_LINE = b": keep-alive\n"


class ModelNotFound(NotFound):
    code = "model_not_found"


class StreamLost(ServiceUnavailable):
    code = "worker_lost"


def _save_chat(
    session: Session, *, owner: str, name: str, turns: list[tuple[str, str]]
) -> uuid.UUID:
    chat = create_chat(session, owner=owner, data=ChatCreate(name=name))
    messages = ConversationRepository(session)
    base = utcnow()
    for index, (role, text) in enumerate(turns):
        at = base + timedelta(microseconds=index)  # keeps the request's order
        messages.add(
            Conversation(chat_id=chat.id, role=role, message=text, created_at=at, updated_at=at)
        )
    return chat.id


async def start_completion(
    state: AppState,
    *,
    tenant: str,
    name: str,
    turns: list[tuple[str, str]],
    params: GenerationParams,
    request_id: str | None,
) -> uuid.UUID:
    """Save ``turns`` as a new chat and queue its answer through the life cycle (the same
    start as ``/conversations/inference``); returns the generation id."""
    await check_start_rate(state.redis, tenant, state.settings)
    chat_id = await run_in_session(
        state.sessions, lambda s: _save_chat(s, owner=tenant, name=name, turns=turns)
    )
    try:
        started = await run_in_threadpool(
            state.lifecycle.start,
            owner=tenant,
            chat_id=chat_id,
            kind="chat",
            regenerate=False,
            request_id=request_id,
            params=params.to_column(),
        )
    except ChatbotError:
        # Nothing will answer it (the last worker left a moment ago): leave no trace.
        await run_in_session(
            state.sessions, lambda s: delete_chat(s, chat_id=chat_id, owner=tenant)
        )
        raise
    return started.generation_id


def _checked_text(text: str, *, field: str, max_bytes: int) -> str:
    """Text a database can store (no NUL, no lone surrogate), within ``max_bytes``."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(
            f"{field} must be valid Unicode text (no lone surrogates)",
            details=[{"field": field}],
        ) from None
    if "\x00" in text:
        raise BadRequest(f"{field} must not contain NUL characters", details=[{"field": field}])
    if size > max_bytes:
        raise PayloadTooLarge(
            f"{field} is {size} bytes; the limit is {max_bytes} bytes",
            details=[{"field": field, "max_bytes": max_bytes}],
        )
    return text


def _turns(body: fmt.CompletionRequest, *, max_bytes: int) -> list[tuple[str, str]]:
    """The chat's messages; system and developer messages are checked here and go into the
    prompt's system message (``CompletionRequest.params``)."""
    turns = []
    for index, message in enumerate(body.messages):
        field = f"messages.{index}.content"
        text = _checked_text(message.text, field=field, max_bytes=max_bytes)
        if message.role not in ROLES:
            continue
        if not text.strip():
            raise BadRequest(f"{field} must not be empty", details=[{"field": field}])
        turns.append((ROLES[message.role], text))
    if not turns or turns[-1][0] != "Human":
        raise BadRequest(
            "the last message (after system messages) must be the user's: it is what is answered",
            details=[{"field": "messages"}],
        )
    return turns


def _chat_name(turns: list[tuple[str, str]]) -> str:
    words = turns[-1][1].split()
    name = " ".join(words[:CHAT_NAME_WORDS]) + (" …" if len(words) > CHAT_NAME_WORDS else "")
    return f"openai: {name}"[:255]


def _follow(
    state: AppState, generation_id: str, after: str | None
) -> AsyncGenerator[list[Event] | Signal, None]:
    return follow_generation(
        redis=state.redis,
        hub=state.hub,
        generation_id=generation_id,
        after=after,
        keepalive_s=state.settings.keepalive_s,
        shutting_down=state.shutting_down,
    )


def _sse(data: Any, event_id: str | None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _failure(event: Event) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI error object for a generation's ``error`` event."""
    error = event.json().get("error") or {}
    code = str(error.get("code", "generation_failed"))
    status = 503 if code in ("no_worker", "worker_lost", "unavailable") else 500
    message = str(error.get("message", code))
    return status, fmt.error_body(status=status, code=code, message=message)


SIGNAL_ERRORS = {
    Signal.SHUTDOWN: ("server_shutdown", "the server is restarting: resend with Last-Event-ID"),
    Signal.REDIS_LOST: ("unavailable", "the server lost Redis: resend with Last-Event-ID"),
}


async def _chunks(
    state: AppState,
    *,
    generation_id: str,
    after: str | None,
    body: fmt.CompletionRequest,
    created: int,
) -> AsyncIterator[bytes]:
    """The stream as ``chat.completion.chunk`` events, each with the id of its last event."""
    shape: dict[str, Any] = {
        "completion_id": f"chatcmpl-{generation_id}",
        "created": created,
        "model": body.model,
        "include_usage": body.include_usage,
    }
    role_sent = text_sent = after is not None
    async with contextlib.aclosing(_follow(state, generation_id, after)) as events:
        async for item in events:
            if item is Signal.KEEPALIVE:
                yield KEEPALIVE_LINE
                continue
            if isinstance(item, Signal):
                code, message = SIGNAL_ERRORS[item]
                yield _sse(fmt.error_body(status=503, code=code, message=message), None)
                return
            pending: list[str] = []
            pending_id = ""
            for event in item:
                event_id = f"{generation_id}:{event.entry_id}"
                if not role_sent:  # the stream's first event (``queue``) opens the message
                    delta = {"role": "assistant", "content": ""}
                    yield _sse(fmt.chunk(delta=delta, **shape), event_id)
                    role_sent = True
                if event.type == "token":
                    pending.append(event.data)
                    pending_id = event_id
                    continue
                if pending:
                    yield _sse(fmt.chunk(delta={"content": "".join(pending)}, **shape), pending_id)
                    text_sent, pending = True, []
                if event.type == "restart" and text_sent:
                    # A worker died mid-answer and the job starts over: an OpenAI client
                    # cannot take text back, so this stream ends (the chat API's goes on).
                    lost = StreamLost("the worker was lost mid-answer; send the request again")
                    yield _sse(
                        fmt.error_body(status=503, code=lost.code, message=lost.message), None
                    )
                    return
                if event.type == "done":
                    done = event.json()
                    finish = fmt.finish_reason(done)
                    yield _sse(fmt.chunk(delta={}, finish=finish, **shape), event_id)
                    if body.include_usage:
                        yield _sse(fmt.chunk(usage=done.get("usage"), **shape), event_id)
                    yield DONE
                    return
                if event.type == "error":
                    yield _sse(_failure(event)[1], event_id)
                    return
            if pending:
                yield _sse(fmt.chunk(delta={"content": "".join(pending)}, **shape), pending_id)
                text_sent = True


async def _collect(
    state: AppState, *, generation_id: str, body: fmt.CompletionRequest, created: int
) -> JSONResponse:
    pieces: list[str] = []
    async with contextlib.aclosing(_follow(state, generation_id, None)) as events:
        async for item in events:
            if item is Signal.KEEPALIVE:
                continue
            if isinstance(item, Signal):
                code, message = SIGNAL_ERRORS[item]
                return JSONResponse(fmt.error_body(status=503, code=code, message=message), 503)
            for event in item:
                if event.type == "token":
                    pieces.append(event.data)
                elif event.type == "restart":
                    pieces.clear()
                elif event.type == "error":
                    status, failure = _failure(event)
                    return JSONResponse(failure, status_code=status)
                elif event.type == "done":
                    done = event.json()
                    saved = done.get("message") or {}
                    data = fmt.completion(
                        completion_id=f"chatcmpl-{generation_id}",
                        created=created,
                        model=body.model,
                        text=saved.get("message", "".join(pieces)),
                        finish=fmt.finish_reason(done),
                        usage=done.get("usage") or {},
                    )
                    return JSONResponse(data)
    raise ServiceUnavailable("the answer's stream ended without a result")


def _generation_status(session: Session, generation_id: uuid.UUID, *, owner: str) -> str | None:
    """The status of a generation of ``owner``'s (None for another tenant's, too)."""
    generation = GenerationRepository(session).get(generation_id)
    if generation is None:
        return None
    try:
        check_owner(session, chat_id=generation.chat_id, owner=owner)
    except NotFound:
        return None
    return str(generation.status)


async def _completions(request: Request) -> Response:
    state = app_state(request)
    settings = state.settings
    body = await parse_body(request, fmt.CompletionRequest, max_bytes=settings.max_body_bytes)
    created = int(time.time())
    resume = parse_last_event_id(request.headers.get("last-event-id"))
    if resume is not None and body.stream:
        resumed, after = resume
        tenant = tenant_of(request)
        status = await run_db(request, lambda s: _generation_status(s, resumed, owner=tenant))
        if status is None:
            raise NotFound(f"the stream {resumed} named by Last-Event-ID does not exist")
        if status in FINAL_STATUSES:
            # A stream that lost its ending (Redis restarted) gets it back from the database.
            await run_in_threadpool(state.lifecycle.ensure_terminal, resumed)
        chunks = _chunks(state, generation_id=str(resumed), after=after, body=body, created=created)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)

    models = await workers.live_models(state.redis)
    if not models:
        raise await run_in_threadpool(no_worker_error, state.sync_redis)
    if body.model not in models:
        raise ModelNotFound(
            f"the model {body.model!r} does not exist here; the workers serve: "
            + ", ".join(models),
            details=[{"field": "model"}],
        )
    turns = _turns(body, max_bytes=settings.max_message_bytes)
    generation_id = str(
        await start_completion(
            state,
            tenant=tenant_of(request),
            name=_chat_name(turns),
            turns=turns,
            params=body.params(max_new_tokens=settings.max_new_tokens),
            request_id=request_id_var.get(),
        )
    )
    if body.stream:
        chunks = _chunks(state, generation_id=generation_id, after=None, body=body, created=created)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
    return await _collect(state, generation_id=generation_id, body=body, created=created)


async def _openai_errors(request: Request, handler: Any) -> Response:
    """Run ``handler``; errors become OpenAI error objects (the rest of the API keeps its
    own shape)."""
    try:
        response: Response = await handler(request)
        return response
    except ChatbotError as exc:
        retry = None
        if isinstance(exc, QueueFull):
            retry = {"Retry-After": str(exc.retry_after_s)}
        elif exc.status_code == 503:
            retry = {"Retry-After": "5"}
        return fmt.error_response(exc, headers=retry)
    except (RedisError, OperationalError, PoolTimeout) as exc:
        which = "Redis" if isinstance(exc, RedisError) else "the database"
        error = ServiceUnavailable(f"{which} is unavailable; try again shortly")
        return fmt.error_response(error, headers={"Retry-After": "5"})


@api(
    summary="OpenAI-compatible chat completion (stream or not); saved as a chat",
    description=(
        "The OpenAI chat completions contract: chat.completion, or with stream=true "
        "chat.completion.chunk events ending with data: [DONE]; "
        "stream_options.include_usage adds a last chunk with the usage. Every chunk has an "
        "SSE id: send the same request again with Last-Event-ID to resume after it. "
        "Errors are OpenAI error objects {error: {message, type, param, code}}."
    ),
    body=fmt.CompletionRequest,
    content_type="application/json",
    errors=[400, 401, 404, 413, 503],
)
async def chat_completions(request: Request) -> Response:
    return await _openai_errors(request, _completions)


async def _models(request: Request) -> Response:
    names = await workers.live_models(app_state(request).redis)
    return JSONResponse(fmt.model_list(names))


@api(
    summary="The models the running workers serve (OpenAI format)",
    response_example={
        "object": "list",
        "data": [{"id": "smollm2", "object": "model", "created": 0, "owned_by": "chatbot"}],
    },
    errors=[401],
)
async def list_models(request: Request) -> Response:
    return await _openai_errors(request, _models)


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
