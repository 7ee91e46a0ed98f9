"""The generations table."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    or_,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UTCDateTime, new_id, utcnow


class Status(enum.StrEnum):
    """Where a generation is in its life: queued -> running -> done / cancelled / error.
    Only ``shared.generations.lifecycle`` moves a generation from one to another."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    ERROR = "error"


class FinishReason(enum.StrEnum):
    """Why an answer ended (the ``finish_reason`` of the ``done`` event)."""

    STOP = "stop"  # the model ended its turn
    LENGTH = "length"  # MAX_NEW_TOKENS reached
    DEADLINE = "deadline"  # GENERATION_TIME_LIMIT_S reached
    CANCELLED = "cancelled"  # POST /conversations/stop
    ABANDONED = "abandoned"  # nobody listened for STREAM_GRACE_S (or its worker died then)
    INTERRUPTED = "interrupted"  # the token bus (Redis) was lost: the partial answer is kept


ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
FINAL_STATUSES = (Status.DONE, Status.CANCELLED, Status.ERROR)


class Generation(Base):
    """One answer being produced (or produced) by a worker for a chat."""

    __tablename__ = "generations"
    __table_args__ = (
        # At most one queued or running generation per chat: a second request attaches.
        Index(
            "uq_generations_active_chat",
            "chat_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    chat_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("chats.id", ondelete="CASCADE"), index=True
    )
    question_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="SET NULL", use_alter=True), default=None
    )
    kind: Mapped[str] = mapped_column(String(16), default="chat")
    status: Mapped[str] = mapped_column(String(16), default=Status.QUEUED)
    model: Mapped[str] = mapped_column(String(255), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # Per-request overrides (the OpenAI API's sampling fields and system prompt); see
    # shared.generations.params. None: the server's settings.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    first_token_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


def status_in(statuses: Iterable[str]) -> ColumnElement[bool]:
    """``status`` is one of ``statuses``, as one bound parameter per status: SQLAlchemy
    renders an expanding ``IN`` anew on every execution (about 2 ms of a start's query
    here), while this is compiled once and cached with its statement."""
    return or_(*(Generation.status == status for status in statuses))
