"""Queries on chats and messages. Callers own the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared.chats.models import Chat, Conversation


class ChatRepository:
    """Reads and writes ``chats``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, chat_id: uuid.UUID) -> Chat | None:
        return self.session.get(Chat, chat_id)

    def page(self, *, limit: int, offset: int) -> Sequence[Chat]:
        query = (
            select(Chat)
            .order_by(Chat.created_at.desc(), Chat.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return self.session.scalars(query).all()

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Chat)) or 0

    def add(self, chat: Chat) -> Chat:
        self.session.add(chat)
        self.session.flush()
        return chat

    def delete(self, chat: Chat) -> None:
        # The database cascades to messages and generations (ON DELETE CASCADE).
        self.session.execute(delete(Chat).where(Chat.id == chat.id))


class ConversationRepository:
    """Reads and writes ``conversations`` (messages)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, message_id: uuid.UUID) -> Conversation | None:
        return self.session.get(Conversation, message_id)

    def page(self, *, chat_id: uuid.UUID | None, limit: int, offset: int) -> Sequence[Conversation]:
        query = select(Conversation)
        if chat_id is not None:
            query = query.where(Conversation.chat_id == chat_id)
        query = query.order_by(Conversation.created_at, Conversation.id).limit(limit).offset(offset)
        return self.session.scalars(query).all()

    def count(self, *, chat_id: uuid.UUID | None) -> int:
        query = select(func.count()).select_from(Conversation)
        if chat_id is not None:
            query = query.where(Conversation.chat_id == chat_id)
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

    def history(self, chat_id: uuid.UUID, *, up_to: Conversation, limit: int) -> list[Conversation]:
        """The newest ``limit`` messages up to and including ``up_to``, oldest first."""
        query = (
            select(Conversation)
            .where(
                Conversation.chat_id == chat_id,
                (Conversation.created_at < up_to.created_at)
                | ((Conversation.created_at == up_to.created_at) & (Conversation.id <= up_to.id)),
            )
            .order_by(Conversation.created_at.desc(), Conversation.id.desc())
            .limit(limit)
        )
        return list(reversed(self.session.scalars(query).all()))

    def for_generation(self, generation_id: uuid.UUID) -> Conversation | None:
        """The answer a generation saved, if any."""
        query = select(Conversation).where(Conversation.generation_id == generation_id)
        return self.session.scalars(query).first()

    def add(self, message: Conversation) -> Conversation:
        self.session.add(message)
        self.session.flush()
        return message
