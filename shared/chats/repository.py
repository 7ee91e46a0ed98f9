"""Queries on chats and messages. Callers own the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Select, bindparam, delete, func, select, true
from sqlalchemy.orm import Session

from shared.chats.models import Chat, Conversation

T = TypeVar("T")


class ChatRepository:
    """Reads and writes ``chats``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, chat_id: uuid.UUID, *, owner: str | None) -> Chat | None:
        """The chat, if it exists and (``owner`` given) belongs to that tenant."""
        chat = self.session.get(Chat, chat_id)
        if chat is None or (owner is not None and chat.owner != owner):
            return None
        return chat

    def page(self, *, owner: str, limit: int, offset: int) -> Sequence[Chat]:
        query = (
            select(Chat)
            .where(Chat.owner == owner)
            .order_by(Chat.created_at.desc(), Chat.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return self.session.scalars(query).all()

    def count(self, *, owner: str) -> int:
        query = select(func.count()).select_from(Chat).where(Chat.owner == owner)
        return self.session.scalar(query) or 0

    def add(self, chat: Chat) -> Chat:
        self.session.add(chat)
        self.session.flush()
        return chat

    def delete(self, chat: Chat) -> None:
        # The database cascades to messages and generations (ON DELETE CASCADE).
        self.session.execute(delete(Chat).where(Chat.id == chat.id))


def _owned(query: Select[T], *, owner: str, chat_id: uuid.UUID | None) -> Select[T]:
    """Only the messages of ``owner``'s chats (of one chat, when ``chat_id`` is given)."""
    query = query.join(Chat, Chat.id == Conversation.chat_id).where(Chat.owner == owner)
    if chat_id is not None:
        query = query.where(Conversation.chat_id == chat_id)
    return query


class ConversationRepository:
    """Reads and writes ``conversations`` (messages)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, message_id: uuid.UUID) -> Conversation | None:
        return self.session.get(Conversation, message_id)

    def page(
        self, *, owner: str, chat_id: uuid.UUID | None, limit: int, offset: int
    ) -> Sequence[Conversation]:
        query = _owned(select(Conversation), owner=owner, chat_id=chat_id)
        query = query.order_by(Conversation.created_at, Conversation.id).limit(limit).offset(offset)
        return self.session.scalars(query).all()

    def count(self, *, owner: str, chat_id: uuid.UUID | None) -> int:
        query = _owned(select(func.count()).select_from(Conversation), owner=owner, chat_id=chat_id)
        return self.session.scalar(query) or 0

    def latest(self, chat_id: uuid.UUID) -> Conversation | None:
        query = (
            select(Conversation)
            .where(Conversation.chat_id == chat_id)
            .order_by(Conversation.created_at.desc(), Conversation.id.desc())
            .limit(1)
        )
        return self.session.scalars(query).first()

    def latest_human(self, chat_id: uuid.UUID) -> Conversation | None:
        query = (
            select(Conversation)
            .where(Conversation.chat_id == chat_id, Conversation.role == "Human")
            .order_by(Conversation.created_at.desc(), Conversation.id.desc())
            .limit(1)
        )
        return self.session.scalars(query).first()

    def history(self, chat_id: uuid.UUID, *, up_to: uuid.UUID, limit: int) -> list[Conversation]:
        """The newest ``limit`` messages up to and including the message ``up_to``, oldest
        first, in one query; empty when ``up_to`` does not exist (it was deleted)."""
        rows = self.session.scalars(
            _HISTORY, {"chat_id": chat_id, "up_to": up_to, "limit": limit}
        ).all()
        return list(reversed(rows))

    def for_generation(self, generation_id: uuid.UUID) -> Conversation | None:
        """The answer a generation saved, if any."""
        query = select(Conversation).where(Conversation.generation_id == generation_id)
        return self.session.scalars(query).first()

    def add(self, message: Conversation) -> Conversation:
        self.session.add(message)
        self.session.flush()
        return message


def _history_query() -> Select[Conversation]:
    up_to = (
        select(Conversation.created_at, Conversation.id)
        .where(Conversation.id == bindparam("up_to"))
        .subquery()
    )
    return (
        select(Conversation)
        .join(up_to, true())
        .where(
            Conversation.chat_id == bindparam("chat_id"),
            (Conversation.created_at < up_to.c.created_at)
            | ((Conversation.created_at == up_to.c.created_at) & (Conversation.id <= up_to.c.id)),
        )
        .order_by(Conversation.created_at.desc(), Conversation.id.desc())
        .limit(bindparam("limit"))
    )


#: Built once (a worker reads it per answer): building it and its cache key cost more
#: than running it.
_HISTORY = _history_query()
