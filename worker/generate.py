"""The generation service: claim a queued generation, build the prompt, stream tokens to
the bus, save the answer. Runs inside a worker process with a loaded ``Runtime``."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from shared.chats.models import Conversation
from shared.chats.repository import ConversationRepository
from shared.db import utcnow
from shared.errors import ChatbotError, GenerationFailed
from shared.generations.models import FinishReason, Generation
from shared.generations.params import sampling_overrides, system_prompt
from shared.publisher import PublishError, TokenPublisher
from shared.tokenbus import TokenWriter
from worker import metrics
from worker.engine import ChatMessage, SamplingParams, fit_messages
from worker.runtime import Runtime

log = logging.getLogger(__name__)

HISTORY_LIMIT = 200
#: How long the end of an answer waits for its tokens to reach Redis.
PUBLISH_FLUSH_S = 30.0
#: A preparation (an internet search) longer than this checks the stop flag again.
STOP_RECHECK_S = 0.05
#: How long the decode loop waits for the answer's first token (or lead) to reach Redis
#: before the engine evaluates it: the engine's threads fill the cores, and the publisher
#: thread, Redis and the web tier would otherwise wait for a slice of them (2 cores,
#: interleaved answers: first token p50 112.5 -> 101.1 ms). The loop's only wait for
#: Redis: once per answer, bounded.
FIRST_TOKEN_WAIT_S = 0.01
ROLE_MAP = {"Human": "user", "Assistant": "assistant"}


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
    system = ChatMessage(
        "system", system_prompt(generation.params, default=runtime.settings.system_prompt)
    )
    turns = [ChatMessage(ROLE_MAP[m.role], m.message) for m in history]  # type: ignore[arg-type]
    return Prepared(messages=[system, *turns])


PREPARERS: dict[str, Preparer] = {"chat": prepare_chat}


def run_generation(runtime: Runtime, *, generation_id: str) -> None:
    """Run one generation from claim to the terminal ``done`` or ``error`` event."""
    with metrics.recording(runtime.redis):  # written to Redis once, when it ends
        history: list[list[Conversation] | None] = []  # read with the claim, one session
        generation = runtime.lifecycle.claim(
            uuid.UUID(generation_id),
            worker_id=runtime.worker_id,
            model=runtime.engine.model_name,
            read=lambda session, claimed: history.append(_history(session, claimed)),
            end_if_stopped=True,  # stopped while it waited: ended there
        )
        if generation is None:
            log.info("generation ended, stopped or taken; nothing to do")
            return
        metrics.generation_started(
            kind=generation.kind,
            queued_at=generation.created_at,
            started_at=generation.started_at,
            attempt=generation.attempts,
        )
        writer = TokenWriter(
            runtime.redis,
            generation_id,
            ttl_s=runtime.settings.stream_ttl_s,
            check_listeners=True,
        )
        runtime.current = generation_id
        try:
            _generate(runtime, writer, generation, history[0])
        except ChatbotError as exc:
            runtime.lifecycle.fail(
                generation, code=exc.code, message=exc.message, attempt=generation.attempts
            )
        except Exception as exc:
            log.exception("generation crashed")
            runtime.lifecycle.fail(
                generation,
                code="generation_failed",
                message=f"the worker could not finish this answer: {type(exc).__name__}: {exc}",
                attempt=generation.attempts,
            )
        finally:
            runtime.current = None


def _generate(
    runtime: Runtime,
    writer: TokenWriter,
    generation: Generation,
    history: list[Conversation] | None,
) -> None:
    settings = runtime.settings
    deadline = time.monotonic() + settings.generation_time_limit_s
    if history is None:
        raise GenerationFailed("the question this generation answers was deleted")
    preparer = PREPARERS.get(generation.kind)
    if preparer is None:
        raise GenerationFailed(f"unknown generation kind {generation.kind!r}")
    checked = time.monotonic()
    prepared = preparer(runtime, writer, generation, history)
    if time.monotonic() - checked > STOP_RECHECK_S and (flag := writer.stop_requested()):
        # The search took a while: the answer may have been stopped meanwhile.
        runtime.lifecycle.finish(
            generation, text="", sources=prepared.sources, reason=FinishReason(flag)
        )
        return
    fitted = fit_messages(runtime.engine, prepared.messages, max_new_tokens=settings.max_new_tokens)
    if fitted.dropped or fitted.truncated:
        log.info(
            "chat trimmed to fit the context window",
            extra={"dropped": fitted.dropped, "truncated": fitted.truncated},
        )
    params = SamplingParams.from_settings(settings, **sampling_overrides(generation.params))
    pieces: list[str] = []
    reason: FinishReason | None = None
    first_token_at = None
    with (
        runtime.threads.running() as threads,
        TokenPublisher(
            writer,
            window_s=settings.publish_window_s,
            abandon_grace_s=settings.stream_grace_s,
        ) as publisher,
    ):
        prompt = fitted.tokens
        if prepared.lead:  # the answer opens with it, and the model goes on from it
            prompt = [*prompt, *runtime.engine.tokenize(prepared.lead)]
            first_token_at = utcnow()
            pieces.append(prepared.lead)
            publisher.put_token(prepared.lead)
            publisher.delivered(FIRST_TOKEN_WAIT_S)  # before the prompt's evaluation
        stream = runtime.engine.stream(prompt, params, threads=threads)
        try:
            for piece in stream:
                if not piece:
                    continue
                if first_token_at is None:
                    first_token_at = utcnow()
                pieces.append(piece)
                metrics.token()
                publisher.put_token(piece)  # never waits for Redis, but for the first:
                if len(pieces) == 1:
                    publisher.delivered(FIRST_TOKEN_WAIT_S)
                if flag := publisher.stop_flag:
                    reason = FinishReason(flag)
                    break
                if time.monotonic() > deadline:
                    reason = FinishReason.DEADLINE
                    break
        finally:
            stream.close()
        try:
            publisher.flush(PUBLISH_FLUSH_S)  # every token before the terminal event
        except PublishError as exc:
            # Redis stayed away: keep the answer; its `done` event carries the saved text.
            log.error("lost the token bus mid-answer: %s", exc)
            reason = FinishReason.INTERRUPTED
    generation.prompt_tokens = stream.prompt_tokens
    generation.completion_tokens = stream.completion_tokens
    generation.first_token_at = first_token_at
    metrics.tokens_used(
        prompt_tokens=stream.prompt_tokens, completion_tokens=stream.completion_tokens
    )
    if reason is None:  # the model ended its turn, or reached MAX_NEW_TOKENS
        reason = FinishReason(stream.finish_reason or "stop")
    runtime.lifecycle.finish(
        generation, text="".join(pieces), sources=prepared.sources, reason=reason
    )


def _history(session: Session, generation: Generation) -> list[Conversation] | None:
    """The chat up to the generation's question; None if the question was deleted."""
    if generation.question_id is None:
        return None
    history = ConversationRepository(session).history(
        generation.chat_id, up_to=generation.question_id, limit=HISTORY_LIMIT
    )
    return history or None  # empty: the question is gone
