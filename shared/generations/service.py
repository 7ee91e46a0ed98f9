"""Queries behind the life cycle's start: which question a new generation answers."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.chats.repository import ConversationRepository
from shared.db import utcnow
from shared.errors import Conflict
from shared.generations.models import Generation, Status
from shared.generations.repository import GenerationRepository


def new_generation(
    session: Session,
    *,
    chat_id: uuid.UUID,
    kind: str,
    model: str,
    regenerate: bool,
    request_id: str | None,
    params: dict[str, Any] | None = None,
) -> Generation | None:
    """Queue a generation for the chat's last Human message. ``Conflict`` when there is
    nothing to answer; None when another request queued one a moment ago (the
    one-active-generation-per-chat index said no)."""
    messages = ConversationRepository(session)
    latest = messages.latest(chat_id)
    if latest is None:
        raise Conflict(f"chat {chat_id} has no messages: post a Human message first")
    if latest.role != "Human" and not regenerate:
        raise Conflict(
            f"the last message of chat {chat_id} is already answered: post a Human "
            "message or ask again with ?regenerate=true"
        )
    question = latest if latest.role == "Human" else messages.latest_human(chat_id)
    if question is None:
        raise Conflict(f"chat {chat_id} has no Human message to answer")
    generation = Generation(
        chat_id=chat_id,
        question_id=question.id,
        kind=kind,
        status=Status.QUEUED,
        model=model,
        request_id=request_id,
        params=params,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            GenerationRepository(session).add(generation)
    except IntegrityError:
        return None
    return generation
