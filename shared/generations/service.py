"""Starting, attaching to and ending generations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.chats.repository import ConversationRepository
from shared.chats.service import get_chat
from shared.db import utcnow
from shared.errors import Conflict
from shared.generations.models import ACTIVE_STATUSES, Generation
from shared.generations.repository import GenerationRepository


@dataclass(frozen=True)
class Started:
    """The generation a stream request follows, and whether this request created it."""

    generation: Generation
    created: bool


def start_or_attach(
    session: Session,
    *,
    chat_id: uuid.UUID,
    kind: str,
    model: str,
    regenerate: bool,
    request_id: str | None,
) -> Started:
    """Attach to the chat's running generation, or queue a new one for its last question.

    Raises ``NotFound`` for a missing chat and ``Conflict`` when there is nothing to answer.
    The caller commits before enqueueing the job.
    """
    get_chat(session, chat_id=chat_id, owner=None)  # the route checked the tenant
    generations = GenerationRepository(session)
    if (active := generations.active_for_chat(chat_id)) is not None:
        return Started(active, created=False)
    messages = ConversationRepository(session)
    latest = messages.latest(chat_id)
    if latest is None:
        raise Conflict(f"chat {chat_id} has no messages: post a Human message first")
    if latest.role != "Human" and not regenerate:
        raise Conflict(
            f"the last message of chat {chat_id} is already answered: post a Human message "
            "or ask again with ?regenerate=true"
        )
    question = latest if latest.role == "Human" else messages.latest_human(chat_id)
    if question is None:
        raise Conflict(f"chat {chat_id} has no Human message to answer")
    generation = Generation(
        chat_id=chat_id,
        question_id=question.id,
        kind=kind,
        status="queued",
        model=model,
        request_id=request_id,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            generations.add(generation)
    except IntegrityError:
        # Another request queued one for this chat a moment ago: follow that one.
        if (active := generations.active_for_chat(chat_id)) is not None:
            return Started(active, created=False)
        raise
    return Started(generation, created=True)


def find_for_resume(
    session: Session, *, chat_id: uuid.UUID, generation_id: uuid.UUID
) -> Generation | None:
    """The generation a ``Last-Event-ID`` names, if it belongs to this chat."""
    generation = GenerationRepository(session).get(generation_id)
    if generation is None or generation.chat_id != chat_id:
        return None
    return generation


def active_for_chat(session: Session, *, chat_id: uuid.UUID) -> Generation | None:
    get_chat(session, chat_id=chat_id, owner=None)  # the route checked the tenant
    return GenerationRepository(session).active_for_chat(chat_id)


def fail(
    session: Session,
    *,
    generation_id: uuid.UUID,
    code: str,
    message: str,
    from_: tuple[str, ...] = ACTIVE_STATUSES,
) -> bool:
    """Mark an active generation as failed; False if it had already moved on."""
    return GenerationRepository(session).transition(
        generation_id,
        from_=from_,
        status="error",
        error_code=code,
        error=message,
        finished_at=utcnow(),
    )


def cancel_queued(session: Session, *, generation_id: uuid.UUID) -> bool:
    """Cancel a generation no worker has started; False if one already has."""
    return GenerationRepository(session).transition(
        generation_id, from_=("queued",), status="cancelled", finished_at=utcnow()
    )
