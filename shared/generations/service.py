"""Queries behind the life cycle's start: what the chat holds now (one query), and a new
generation for its last Human message (one statement); on Postgres both in one statement
(``queue_generation``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Integer, Select, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.chats.models import Chat, Conversation
from shared.chats.service import chat_not_found
from shared.db import new_id, utcnow
from shared.errors import Conflict
from shared.generations.models import ACTIVE_STATUSES, Generation, Status, status_in


@dataclass(frozen=True)
class StartFacts:
    """A chat as a start sees it: its active generation, the queue's length, and the
    role of its last message and the id of its last Human one."""

    chat_id: uuid.UUID
    active_id: uuid.UUID | None
    queued: int
    latest_role: str | None
    latest_human_id: uuid.UUID | None

    def question_id(self, *, regenerate: bool) -> uuid.UUID:
        """The message a new generation answers; ``Conflict`` when there is none."""
        if self.latest_role is None:
            raise Conflict(f"chat {self.chat_id} has no messages: post a Human message first")
        if self.latest_role != "Human" and not regenerate:
            raise Conflict(
                f"the last message of chat {self.chat_id} is already answered: post a Human "
                "message or ask again with ?regenerate=true"
            )
        if self.latest_human_id is None:
            raise Conflict(f"chat {self.chat_id} has no Human message to answer")
        return self.latest_human_id

    def can_queue(self, *, regenerate: bool, max_queued: int) -> bool:
        """Whether a new generation may be queued: none is active, the queue has room, and
        there is a question (``question_id`` would not raise)."""
        return (
            self.active_id is None
            and self.queued < max_queued
            and self.latest_human_id is not None
            and (self.latest_role == "Human" or regenerate)
        )


def _facts_query(*, owned: bool) -> Select[Any]:
    newest = (Conversation.created_at.desc(), Conversation.id.desc())
    of_chat = Conversation.chat_id == Chat.id
    query = select(
        Chat.id,
        select(Generation.id)
        .where(Generation.chat_id == Chat.id, status_in(ACTIVE_STATUSES))
        .limit(1)
        .scalar_subquery()
        .label("active_id"),
        select(func.count())
        .select_from(Generation)
        .where(Generation.status == Status.QUEUED)
        .scalar_subquery()
        .label("queued"),
        select(Conversation.role)
        .where(of_chat)
        .order_by(*newest)
        .limit(1)
        .scalar_subquery()
        .label("latest_role"),
        select(Conversation.id)
        .where(of_chat, Conversation.role == "Human")
        .order_by(*newest)
        .limit(1)
        .scalar_subquery()
        .label("latest_human_id"),
    ).where(Chat.id == bindparam("chat_id"))
    return query.where(Chat.owner == bindparam("owner")) if owned else query


#: Built once: building such a statement and its cache key is most of a start's Python time.
_FACTS = {owned: _facts_query(owned=owned) for owned in (False, True)}


def start_facts(session: Session, *, chat_id: uuid.UUID, owner: str | None) -> StartFacts:
    """What a start needs to know, in one query; ``NotFound`` when the chat does not exist
    or belongs to another tenant (``owner`` None: no tenant check)."""
    query = _FACTS[owner is not None]
    row = session.execute(query, {"chat_id": chat_id, "owner": owner}).first()
    if row is None:
        raise chat_not_found(chat_id)
    return _facts(chat_id, row)


def _facts(chat_id: uuid.UUID, row: Any) -> StartFacts:
    return StartFacts(
        chat_id=chat_id,
        active_id=row[1],
        queued=int(row[2] or 0),
        latest_role=row[3],
        latest_human_id=row[4],
    )


#: The columns a new generation is inserted with.
_COLUMNS = (
    "id",
    "chat_id",
    "question_id",
    "kind",
    "status",
    "model",
    "request_id",
    "params",
    "created_at",
)


def _insert(dialect: Any) -> Any:
    table = Generation.__table__
    values = {name: bindparam(name, type_=table.c[name].type) for name in _COLUMNS}
    return dialect.insert(table).values(values).on_conflict_do_nothing().returning(table.c.id)


#: The two databases this project runs on both say "INSERT ... ON CONFLICT DO NOTHING".
_INSERTS = {"postgresql": _insert(postgresql), "sqlite": _insert(sqlite)}


def _new_row(
    *, kind: str, model: str, request_id: str | None, params: dict[str, Any] | None
) -> dict[str, Any]:
    """The values of a new queued generation but its chat and question."""
    return {
        "id": new_id(),
        "kind": kind,
        "status": Status.QUEUED,
        "model": model,
        "request_id": request_id,
        "params": params,
        "created_at": utcnow(),
    }


def _queue_statement(*, owned: bool) -> Select[Any]:
    """Postgres: the chat's facts, and the insert of a new generation when they allow one
    (``StartFacts.can_queue`` and ``may_queue``), in one statement: ``WITH facts AS
    (...), inserted AS (INSERT ... SELECT ... FROM facts WHERE ... ON CONFLICT DO NOTHING
    RETURNING id) SELECT facts.*, (SELECT id FROM inserted) FROM facts``. Both read one
    snapshot; the one-active-generation index, which sees other requests' commits, still
    refuses a second (the inserted id is then NULL)."""
    table = Generation.__table__
    facts = _facts_query(owned=owned).cte("facts")

    def bound(name: str) -> Any:
        return bindparam(name, type_=table.c[name].type)

    chosen = select(
        bound("id"),
        facts.c.id,
        facts.c.latest_human_id,
        *(bound(name) for name in _COLUMNS[3:]),
    ).where(
        bindparam("may_queue", type_=Boolean),
        facts.c.active_id.is_(None),
        facts.c.queued < bindparam("max_queued", type_=Integer),
        facts.c.latest_human_id.is_not(None),
        or_(facts.c.latest_role == "Human", bindparam("regenerate", type_=Boolean)),
    )
    inserted = (
        postgresql.insert(Generation)
        .from_select(list(_COLUMNS), chosen)
        .on_conflict_do_nothing()
        .returning(table.c.id)
        .cte("inserted")
    )
    return select(*facts.c, select(inserted.c.id).scalar_subquery())


#: Built once, like ``_FACTS``.
_QUEUE = {owned: _queue_statement(owned=owned) for owned in (False, True)}


def queue_generation(
    session: Session,
    *,
    chat_id: uuid.UUID,
    owner: str | None,
    may_queue: bool,
    max_queued: int,
    regenerate: bool,
    kind: str,
    model: str,
    request_id: str | None,
    params: dict[str, Any] | None = None,
) -> tuple[StartFacts, uuid.UUID | None]:
    """What the chat holds, and the id of a generation queued for its question when the
    facts allow one and ``may_queue`` (None: not queued, because of the facts or because
    another request queued one a moment ago). On Postgres one round trip
    (``_queue_statement``); elsewhere ``start_facts``, then ``new_generation``.
    ``NotFound`` as ``start_facts``."""
    if session.get_bind().dialect.name != "postgresql":
        facts = start_facts(session, chat_id=chat_id, owner=owner)
        if not (may_queue and facts.can_queue(regenerate=regenerate, max_queued=max_queued)):
            return facts, None
        generation_id = new_generation(
            session,
            chat_id=chat_id,
            question_id=facts.question_id(regenerate=regenerate),
            kind=kind,
            model=model,
            request_id=request_id,
            params=params,
        )
        return facts, generation_id
    values = {
        "chat_id": chat_id,
        "owner": owner,
        "may_queue": may_queue,
        "max_queued": max_queued,
        "regenerate": regenerate,
        **_new_row(kind=kind, model=model, request_id=request_id, params=params),
    }
    try:
        row = session.execute(_QUEUE[owner is not None], values).first()
    except IntegrityError as exc:  # the chat went between the read and the insert
        raise chat_not_found(chat_id) from exc
    if row is None:
        raise chat_not_found(chat_id)
    return _facts(chat_id, row), row[5]


def new_generation(
    session: Session,
    *,
    chat_id: uuid.UUID,
    question_id: uuid.UUID,
    kind: str,
    model: str,
    request_id: str | None,
    params: dict[str, Any] | None = None,
) -> uuid.UUID | None:
    """Queue a generation answering ``question_id``; its id, or None when another request
    queued one a moment ago (the one-active-generation-per-chat index said no). One
    ``INSERT ... ON CONFLICT DO NOTHING``; ``NotFound`` if the chat was deleted meanwhile."""
    values = {
        "chat_id": chat_id,
        "question_id": question_id,
        **_new_row(kind=kind, model=model, request_id=request_id, params=params),
    }
    insert = _INSERTS[session.get_bind().dialect.name]
    try:
        return session.execute(insert, values).scalar()
    except IntegrityError as exc:  # the chat went between the read and the insert
        raise chat_not_found(chat_id) from exc
