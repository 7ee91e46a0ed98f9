"""What the app holds while it runs, and the helpers routes use to reach it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from shared.db import transaction
from shared.settings import Settings

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis as SyncRedis
    from redis.asyncio import Redis

    from shared.generations.lifecycle import Lifecycle
    from web.tokenhub import TokenHub

T = TypeVar("T")


@dataclass
class AppState:
    """Resources opened by the lifespan and shared by every request."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: Redis
    celery: Celery
    hub: TokenHub
    #: For the life cycle, which runs in the thread pool.
    sync_redis: SyncRedis
    lifecycle: Lifecycle
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.chatbot
    return state


async def run_db(request: Request, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction on a worker thread, so the event loop never blocks.

    ``work`` should return plain data (serialize rows inside it): the session is closed
    when it returns.
    """
    return await run_in_session(app_state(request).sessions, work)


async def run_in_session(sessions: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """``run_db`` for code that holds the session factory rather than a request."""

    def unit() -> T:
        with transaction(sessions) as session:
            return work(session)

    return await run_in_threadpool(unit)
