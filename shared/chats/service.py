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


def get_chat(session: Session, *, chat_id: uuid.UUID) -> Chat:
    chat = ChatRepository(session).get(chat_id)
    if chat is None:
        raise chat_not_found(chat_id)
    return chat


def list_chats(session: Session, *, limit: int, offset: int) -> Page[Chat]:
    repo = ChatRepository(session)
    return Page(items=repo.page(limit=limit, offset=offset), total=repo.count())


def create_chat(session: Session, *, data: ChatCreate) -> Chat:
    now = utcnow()
    return ChatRepository(session).add(Chat(name=data.name, created_at=now, updated_at=now))


def update_chat(session: Session, *, chat_id: uuid.UUID, data: ChatUpdate) -> Chat:
    chat = get_chat(session, chat_id=chat_id)
    chat.name = data.name
    chat.updated_at = data.updated_at or utcnow()
    session.flush()
    return chat


def delete_chat(session: Session, *, chat_id: uuid.UUID) -> Chat:
    chat = get_chat(session, chat_id=chat_id)
    ChatRepository(session).delete(chat)
    return chat


def create_message(
    session: Session, *, data: ConversationCreate, max_message_bytes: int
) -> Conversation:
    size = len(data.message.encode("utf-8"))
    if size > max_message_bytes:
        raise PayloadTooLarge(
            f"message is {size} bytes; the limit is {max_message_bytes} bytes",
            details=[{"field": "message", "max_bytes": max_message_bytes}],
        )
    get_chat(session, chat_id=data.chat_id)
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
    session: Session, *, chat_id: uuid.UUID | None, limit: int, offset: int
) -> Page[Conversation]:
    if chat_id is not None:
        get_chat(session, chat_id=chat_id)
    repo = ConversationRepository(session)
    return Page(
        items=repo.page(chat_id=chat_id, limit=limit, offset=offset),
        total=repo.count(chat_id=chat_id),
    )
