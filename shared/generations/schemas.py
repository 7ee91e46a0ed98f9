"""JSON shapes of generation events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from shared.chats.repository import ConversationRepository
from shared.chats.schemas import ConversationOut
from shared.generations.models import FinishReason, Generation, Status


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 1)


def generation_info(generation: Generation) -> dict[str, Any]:
    """Payload of the SSE ``generation`` event."""
    return {
        "generation_id": str(generation.id),
        "chat_id": str(generation.chat_id),
        "status": generation.status,
        "kind": generation.kind,
        "model": generation.model,
        "attempt": generation.attempts,
    }


def usage(generation: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


def timings(generation: Generation) -> dict[str, float | None]:
    """queue_ms: queued to started; ttft_ms: started to first token; decode rate."""
    tokens_per_s = None
    if generation.first_token_at and generation.finished_at and generation.completion_tokens > 1:
        seconds = (generation.finished_at - generation.first_token_at).total_seconds()
        if seconds > 0:
            tokens_per_s = round((generation.completion_tokens - 1) / seconds, 1)
    return {
        "queue_ms": _ms(generation.created_at, generation.started_at),
        "ttft_ms": _ms(generation.started_at, generation.first_token_at),
        "total_ms": _ms(generation.created_at, generation.finished_at),
        "tokens_per_s": tokens_per_s,
    }


def terminal_event(
    session: Session, generation: Generation, *, reason: FinishReason | None = None
) -> tuple[Literal["done", "error"], dict[str, Any]]:
    """The ``done`` or ``error`` event that ends a finished generation's stream, built from
    the database (so it can be written again if the stream lost it)."""
    if generation.status == Status.ERROR:
        error = {"code": generation.error_code or "generation_failed", "message": generation.error}
        return "error", {"error": error}
    message = ConversationRepository(session).for_generation(generation.id)
    saved = ConversationOut.model_validate(message).model_dump(mode="json") if message else None
    if reason is None and generation.status == Status.CANCELLED:
        reason = FinishReason.CANCELLED
    return "done", {
        "generation_id": str(generation.id),
        "status": generation.status,
        "finish_reason": reason,
        "message": saved,
        "usage": usage(generation),
        "timings": timings(generation),
    }
