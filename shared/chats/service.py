"""What can be done with chats and messages. Callers commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from shared.chats.models import Chat, Conversation
from shared.chats.repository import ChatRepository, ConversationRepository
from shared.chats.schemas import ChatCreate, ChatUpdate, ConversationCreate
from shared.db import utcnow
from shared.errors import NotFound, PayloadTooLarge

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the total count."""

    items: Sequence[T]
    total: int


def chat_not_found(chat_id: uuid.UUID | str) -> NotFound:
    return NotFound(f"chat {chat_id} does not exist")


def get_chat(session: Session, *, chat_id: uuid.UUID, owner: str | None) -> Chat:
    """The chat, or ``NotFound`` when it does not exist or belongs to another tenant.

    ``owner`` is the requesting tenant; every request path passes it. ``None`` (no tenant
    check) is only for work that already holds a checked id, e.g. a worker's job.
    """
    chat = ChatRepository(session).get(chat_id, owner=owner)
    if chat is None:
        raise chat_not_found(chat_id)
    return chat


def check_owner(session: Session, *, chat_id: uuid.UUID, owner: str) -> None:
    """``NotFound`` unless the chat exists and belongs to ``owner``."""
    get_chat(session, chat_id=chat_id, owner=owner)


def list_chats(session: Session, *, owner: str, limit: int, offset: int) -> Page[Chat]:
    repo = ChatRepository(session)
    return Page(
        items=repo.page(owner=owner, limit=limit, offset=offset), total=repo.count(owner=owner)
    )


def create_chat(session: Session, *, owner: str, data: ChatCreate) -> Chat:
    now = utcnow()
    chat = Chat(owner=owner, name=data.name, created_at=now, updated_at=now)
    return ChatRepository(session).add(chat)


def update_chat(session: Session, *, chat_id: uuid.UUID, owner: str, data: ChatUpdate) -> Chat:
    chat = get_chat(session, chat_id=chat_id, owner=owner)
    chat.name = data.name
    chat.updated_at = data.updated_at or utcnow()
    session.flush()
    return chat


def delete_chat(session: Session, *, chat_id: uuid.UUID, owner: str) -> Chat:
    chat = get_chat(session, chat_id=chat_id, owner=owner)
    ChatRepository(session).delete(chat)
    return chat


def create_message(
    session: Session, *, owner: str, data: ConversationCreate, max_message_bytes: int
) -> Conversation:
    size = len(data.message.encode("utf-8"))
    if size > max_message_bytes:
        raise PayloadTooLarge(
            f"message is {size} bytes; the limit is {max_message_bytes} bytes",
            details=[{"field": "message", "max_bytes": max_message_bytes}],
        )
    get_chat(session, chat_id=data.chat_id, owner=owner)
    now = utcnow()
    message = Conversation(
        chat_id=data.chat_id,
        role=data.role,
        message=data.message,
        created_at=now,
        updated_at=now,
    )
    return ConversationRepository(session).add(message)


def list_messages(
    session: Session, *, owner: str, chat_id: uuid.UUID | None, limit: int, offset: int
) -> Page[Conversation]:
    """``owner``'s messages (of one of its chats, when ``chat_id`` is given)."""
    if chat_id is not None:
        get_chat(session, chat_id=chat_id, owner=owner)
    repo = ConversationRepository(session)
    return Page(
        items=repo.page(owner=owner, chat_id=chat_id, limit=limit, offset=offset),
        total=repo.count(owner=owner, chat_id=chat_id),
    )
