"""The generation service: claim a queued generation, build the prompt, stream tokens to
the bus, save the answer. Runs inside a worker process with a loaded ``Runtime``."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.chats.models import Conversation
from shared.chats.repository import ConversationRepository
from shared.chats.schemas import ConversationOut
from shared.db import transaction, utcnow
from shared.errors import ChatbotError
from shared.generations.models import Generation
from shared.generations.repository import GenerationRepository
from shared.generations.schemas import generation_info, timings, usage
from shared.tokenbus import TokenWriter, claim_ownership
from worker import metrics
from worker.engine import ChatMessage, SamplingParams, fit_messages
from worker.runtime import Runtime

log = logging.getLogger(__name__)

HISTORY_LIMIT = 200
ROLE_MAP = {"Human": "user", "Assistant": "assistant"}


class GenerationError(ChatbotError):
    """A generation cannot go on; sent to clients as an ``error`` event."""

    code = "generation_failed"


@dataclass
class Prepared:
    """What the prompt step hands to the decode loop."""

    messages: list[ChatMessage]
    sources: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    lead: str = ""
    """Text the answer opens with (streamed first); the model's tokens follow it."""


#: Builds the prompt for a generation kind. ``internet`` is registered by worker.internet.
Preparer = Callable[[Runtime, TokenWriter, Generation, list[Conversation]], Prepared]


def prepare_chat(
    runtime: Runtime, writer: TokenWriter, generation: Generation, history: list[Conversation]
) -> Prepared:
    system = ChatMessage("system", runtime.settings.system_prompt)
    turns = [ChatMessage(ROLE_MAP[m.role], m.message) for m in history]  # type: ignore[arg-type]
    return Prepared(messages=[system, *turns])


PREPARERS: dict[str, Preparer] = {"chat": prepare_chat}


def _claim(runtime: Runtime, generation_id: uuid.UUID) -> Generation | None:
    """Move the generation to running (counting the attempt); None if it has ended."""
    with transaction(runtime.sessions) as session:
        result = session.execute(
            update(Generation)
            .where(Generation.id == generation_id, Generation.status.in_(("queued", "running")))
            .values(
                status="running",
                attempts=Generation.attempts + 1,
                started_at=utcnow(),
                model=runtime.engine.model_name,
            )
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return None
        return session.get(Generation, generation_id)


def _fail(
    runtime: Runtime, writer: TokenWriter, generation_id: uuid.UUID, *, code: str, message: str
) -> None:
    with transaction(runtime.sessions) as session:
        changed = GenerationRepository(session).transition(
            generation_id,
            from_=("queued", "running"),
            status="error",
            error_code=code,
            error=message,
            finished_at=utcnow(),
        )
    if changed:
        writer.append("error", {"error": {"code": code, "message": message}})
        metrics.generation_ended(status="error")
    log.warning("generation failed: %s", message, extra={"code": code})


def run_generation(runtime: Runtime, *, generation_id: str) -> None:
    """Run one generation from claim to the terminal ``done`` or ``error`` event."""
    with metrics.recording(runtime.redis):  # written to Redis once, when it ends
        _run_generation(runtime, generation_id=generation_id)


def _run_generation(runtime: Runtime, *, generation_id: str) -> None:
    settings = runtime.settings
    gid = uuid.UUID(generation_id)
    writer = TokenWriter(
        runtime.redis, generation_id, ttl_s=settings.stream_ttl_s, check_listeners=True
    )
    generation = _claim(runtime, gid)
    if generation is None:
        log.info("generation already ended; nothing to do")
        return
    claim_ownership(
        runtime.redis, generation_id, worker_id=runtime.worker_id, ttl_s=settings.stream_ttl_s
    )
    metrics.generation_started(
        kind=generation.kind,
        queued_at=generation.created_at,
        started_at=generation.started_at,
        attempt=generation.attempts,
    )
    if generation.attempts > settings.max_attempts:
        _fail(
            runtime,
            writer,
            gid,
            code="too_many_attempts",
            message=f"gave up after {settings.max_attempts} attempts: the workers kept dying",
        )
        return
    if generation.attempts > 1 and writer.has_tokens():
        # An earlier attempt died mid-answer: clients drop what they have and start over.
        writer.append("restart", {"attempt": generation.attempts})
    writer.append("generation", generation_info(generation))
    try:
        _generate(runtime, writer, generation)
    except ChatbotError as exc:
        _fail(runtime, writer, gid, code=exc.code, message=exc.message)
    except Exception as exc:
        log.exception("generation crashed")
        _fail(
            runtime,
            writer,
            gid,
            code="generation_failed",
            message=f"the worker could not finish this answer: {type(exc).__name__}: {exc}",
        )


def _generate(runtime: Runtime, writer: TokenWriter, generation: Generation) -> None:
    settings = runtime.settings
    deadline = time.monotonic() + settings.generation_time_limit_s
    with transaction(runtime.sessions) as session:
        history = _history(session, generation)
    if (flag := writer.stop_requested()) != "":
        _finish(runtime, writer, generation, text="", sources=None, reason=flag)
        return
    preparer = PREPARERS.get(generation.kind)
    if preparer is None:
        raise GenerationError(f"unknown generation kind {generation.kind!r}")
    prepared = preparer(runtime, writer, generation, history)
    if (flag := writer.stop_requested()) != "":  # the search may have taken a while
        _finish(runtime, writer, generation, text="", sources=prepared.sources, reason=flag)
        return
    fitted = fit_messages(runtime.engine, prepared.messages, max_new_tokens=settings.max_new_tokens)
    if fitted.dropped or fitted.truncated:
        log.info(
            "chat trimmed to fit the context window",
            extra={"dropped": fitted.dropped, "truncated": fitted.truncated},
        )
    params = SamplingParams.from_settings(settings)
    pieces: list[str] = []
    reason = "done"
    first_token_at = None
    prompt = fitted.tokens
    if prepared.lead:  # the answer opens with it, and the model goes on from it
        prompt = [*prompt, *runtime.engine.tokenize(prepared.lead)]
        first_token_at = utcnow()
        pieces.append(prepared.lead)
        writer.append("token", prepared.lead)
    stream = runtime.engine.stream(prompt, params)
    try:
        for piece in stream:
            if not piece:
                continue
            if first_token_at is None:
                first_token_at = utcnow()
            pieces.append(piece)
            metrics.token()
            _, flag = writer.append("token", piece)
            if flag:
                reason = flag
                break
            if time.monotonic() > deadline:
                reason = "deadline"
                break
    finally:
        stream.close()
    generation.prompt_tokens = stream.prompt_tokens
    generation.completion_tokens = stream.completion_tokens
    generation.first_token_at = first_token_at
    if reason == "done":
        reason = stream.finish_reason or "stop"  # "stop" (end of turn) or "length"
    _finish(
        runtime, writer, generation, text="".join(pieces), sources=prepared.sources, reason=reason
    )


def _history(session: Session, generation: Generation) -> list[Conversation]:
    messages = ConversationRepository(session)
    question = messages.get(generation.question_id) if generation.question_id else None
    if question is None:
        raise GenerationError("the question this generation answers was deleted")
    return messages.history(generation.chat_id, up_to=question, limit=HISTORY_LIMIT)


def _finish(
    runtime: Runtime,
    writer: TokenWriter,
    generation: Generation,
    *,
    text: str,
    sources: list[dict[str, Any]] | None,
    reason: str,
) -> None:
    """Save the answer and end the stream. ``reason``: done, cancel, abandoned, deadline."""
    status = "cancelled" if reason in ("cancel", "abandoned") else "done"
    now = utcnow()
    saved: dict[str, Any] | None = None
    with transaction(runtime.sessions) as session:
        changed = GenerationRepository(session).transition(
            generation.id,
            from_=("running",),
            status=status,
            finished_at=now,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            first_token_at=generation.first_token_at,
        )
        if not changed:
            log.warning("generation was ended elsewhere; answer not saved")
            return
        if text:
            message = ConversationRepository(session).add(
                Conversation(
                    chat_id=generation.chat_id,
                    role="Assistant",
                    message=text,
                    generation_id=generation.id,
                    status=status,
                    sources=sources,
                    created_at=now,
                    updated_at=now,
                )
            )
            saved = ConversationOut.model_validate(message).model_dump(mode="json")
        row = session.get(Generation, generation.id)
        assert row is not None
        session.refresh(row)
        payload = {
            "generation_id": str(generation.id),
            "status": status,
            "finish_reason": {"cancel": "stopped", "abandoned": "abandoned"}.get(reason, reason),
            "message": saved,
            "usage": usage(row),
            "timings": timings(row),
        }
    # After the commit: a client that sees `done` can read the saved message.
    writer.append("done", payload)
    metrics.generation_ended(
        status=status,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
    )
    log.info(
        "generation %s", status, extra={"tokens": generation.completion_tokens, "reason": reason}
    )
