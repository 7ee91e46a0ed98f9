"""Tables for chats and their messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import Base, UTCDateTime, new_id, utcnow
from shared.settings import DEFAULT_TENANT


class Chat(Base):
    """A named thread of messages, owned by one tenant (an API key's name)."""

    __tablename__ = "chats"
    __table_args__ = (Index("ix_chats_owner_created_at", "owner", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The tenant: the name of the API key that created the chat, never the key itself.
    # Chats created while no keys were configured belong to DEFAULT_TENANT.
    owner: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    conversations: Mapped[list[Conversation]] = relationship(
        back_populates="chat", lazy="raise", passive_deletes=True
    )


class Conversation(Base):
    """One message of a chat, from the ``Human`` or the ``Assistant``."""

    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint("role IN ('Human', 'Assistant')", name="role"),
        Index("ix_conversations_chat_id_created_at", "chat_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    chat_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("chats.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set on answers written by a worker: which generation wrote it, how it ended
    # ("done" or "cancelled") and, for internet answers, the cited sources.
    generation_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("generations.id", ondelete="SET NULL"), default=None, index=True
    )
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    sources: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)

    chat: Mapped[Chat] = relationship(back_populates="conversations", lazy="raise")
