"""Queries on generations. Status changes are conditional updates, so two processes
racing to move one generation (a worker starting it, a web process cancelling it) never
both win."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from shared.generations.models import ACTIVE_STATUSES, Generation, Status, status_in


class GenerationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, generation_id: uuid.UUID) -> Generation | None:
        return self.session.get(Generation, generation_id)

    def active_for_chat(self, chat_id: uuid.UUID) -> Generation | None:
        query = select(Generation).where(Generation.chat_id == chat_id, status_in(ACTIVE_STATUSES))
        return self.session.scalars(query).first()

    def add(self, generation: Generation) -> Generation:
        self.session.add(generation)
        self.session.flush()
        return generation

    def transition(
        self,
        generation_id: uuid.UUID,
        *,
        from_: Iterable[str],
        attempt: int | None = None,
        **values: Any,
    ) -> bool:
        """Set ``values`` if the status is one of ``from_`` (and, given ``attempt``, the
        generation is still on that attempt); True if this call did it."""
        query = update(Generation).where(Generation.id == generation_id, status_in(from_))
        if attempt is not None:
            query = query.where(Generation.attempts == attempt)
        result = self.session.execute(
            query.values(**values).execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def start_queued(
        self, generation_id: uuid.UUID, *, started_at: datetime, model: str
    ) -> Generation | None:
        """Move a queued generation to running (attempt + 1) in one statement; the
        generation as it is now, or None if it was not queued."""
        values = {"generation_id": generation_id, "started_at": started_at, "model": model}
        return self.session.scalars(_START_QUEUED, values).first()

    def active(self) -> list[Generation]:
        """Every queued or running generation, oldest first."""
        query = select(Generation).where(status_in(ACTIVE_STATUSES)).order_by(Generation.created_at)
        return list(self.session.scalars(query).all())

    def queued_count(self) -> int:
        query = select(func.count()).where(Generation.status == Status.QUEUED)
        return int(self.session.scalar(query) or 0)


#: Built once (each claim runs it): building it and its cache key cost more than running it.
_START_QUEUED = (
    update(Generation)
    .where(Generation.id == bindparam("generation_id"), Generation.status == Status.QUEUED)
    .values(
        status=Status.RUNNING,
        attempts=Generation.attempts + 1,
        started_at=bindparam("started_at"),
        model=bindparam("model"),
    )
    .returning(Generation)
    .execution_options(synchronize_session=False)
)
