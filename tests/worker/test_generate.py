"""The worker's generation loop in-process, with the real model, database and Redis: the
deadline and the stop flag end an answer with the right reason, keeping its text."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import tokenbus, workers
from shared.chats.models import Chat, Conversation
from shared.db import make_engine, make_sessionmaker, transaction, utcnow
from shared.generations.lifecycle import Lifecycle
from shared.generations.models import Generation
from shared.settings import Settings
from tests.conftest import make_settings
from worker.engine import load_engine
from worker.generate import PREPARERS, Prepared, prepare_chat, run_generation
from worker.runtime import Runtime
from worker.threads import ThreadsBudget


@pytest.fixture(scope="module")
def engine_settings(model_settings: Settings) -> Settings:
    return model_settings


def _runtime(settings: Settings) -> Runtime:
    sessions = make_sessionmaker(make_engine(settings.sqlalchemy_url))
    client = redis.Redis.from_url(settings.redis_url)
    return Runtime(
        settings=settings,
        engine=load_engine(settings),
        sessions=sessions,
        redis=client,
        lifecycle=Lifecycle(
            settings=settings, sessions=sessions, redis=client, enqueue=lambda *_: None
        ),
        worker_id=workers.this_process_id(),
        stop=threading.Event(),
        threads=ThreadsBudget(client, worker_id=workers.this_process_id(), override=0),
    )


@pytest.fixture
def runtime_for(postgres_url: str, engine_settings: Settings, tmp_path: Path) -> Iterator[object]:
    made: list[Runtime] = []

    def make(**overrides: object) -> Runtime:
        settings = make_settings(
            tmp_path,
            database_url=postgres_url,
            data_dir=engine_settings.data_dir,
            temperature=0.0,
            max_new_tokens=40,
            stream_grace_s=600,  # nobody listens here: keep the answer going
            **overrides,
        )
        runtime = _runtime(settings)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.redis.close()
        runtime.sessions.kw["bind"].dispose()


def _ask(runtime: Runtime) -> tuple[uuid.UUID, uuid.UUID]:
    runtime.redis.zadd(workers.WORKERS_KEY, {runtime.worker_id: time.time()})
    with transaction(runtime.sessions) as session:
        chat = Chat(name="t", created_at=utcnow(), updated_at=utcnow())
        session.add(chat)
        session.flush()
        session.add(
            Conversation(
                chat_id=chat.id,
                role="Human",
                message="Tell me a long story about a cat.",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        chat_id = chat.id
    started = runtime.lifecycle.start(
        owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id=None
    )
    return chat_id, started.generation_id


def _done(runtime: Runtime, gid: uuid.UUID) -> dict[str, object]:
    events = tokenbus.events(runtime.redis, str(gid))
    assert events[-1].type == "done", [e.type for e in events]
    payload: dict[str, object] = events[-1].json()
    return payload


def test_the_deadline_ends_an_answer_keeping_its_text(runtime_for: object) -> None:
    runtime = runtime_for(generation_time_limit_s=1e-6)  # type: ignore[operator]
    _, gid = _ask(runtime)
    run_generation(runtime, generation_id=str(gid))
    done = _done(runtime, gid)
    assert done["status"] == "done" and done["finish_reason"] == "deadline"
    streamed = tokenbus.partial_text(tokenbus.events(runtime.redis, str(gid)))
    assert streamed and done["message"]["message"] == streamed  # type: ignore[index]
    with transaction(runtime.sessions) as session:
        row = session.get(Generation, gid)
        assert row is not None and row.status == "done" and row.completion_tokens >= 1


def test_the_first_token_is_in_redis_before_the_engine_evaluates_it(
    runtime_for: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's threads fill the cores once it evaluates: the first token goes first.
    runtime = runtime_for()  # type: ignore[operator]
    _, gid = _ask(runtime)
    seen: list[list[str]] = []  # the stream's events at each evaluation

    def threads() -> int:
        seen.append([e.type for e in tokenbus.events(runtime.redis, str(gid))])
        return 1

    @contextlib.contextmanager
    def running() -> Iterator[Callable[[], int]]:
        yield threads

    monkeypatch.setattr(runtime.threads, "running", running)
    run_generation(runtime, generation_id=str(gid))
    assert _done(runtime, gid)["finish_reason"] in ("length", "stop")
    assert "token" not in seen[0]  # the prompt (one batch)
    assert seen[1].count("token") == 1  # the first token, before its evaluation


def test_a_lead_is_in_redis_before_the_prompt_is_evaluated(
    runtime_for: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An internet answer's lead is its first token: it goes out before the prompt's
    # evaluation (seconds for an internet prompt on a CPU) takes the cores.
    runtime = runtime_for()  # type: ignore[operator]
    _, gid = _ask(runtime)
    seen: list[list[str]] = []

    def threads() -> int:
        seen.append([e.data for e in tokenbus.events(runtime.redis, str(gid)) if e.type == "token"])
        return 1

    @contextlib.contextmanager
    def running() -> Iterator[Callable[[], int]]:
        yield threads

    def with_lead(*args: Any) -> Prepared:
        return dataclasses.replace(prepare_chat(*args), lead="The cat is called Tom [1].")

    monkeypatch.setattr(runtime.threads, "running", running)
    monkeypatch.setitem(PREPARERS, "chat", with_lead)
    run_generation(runtime, generation_id=str(gid))
    assert seen[0] == ["The cat is called Tom [1]."]  # at the prompt's first batch


def test_a_stop_before_the_first_token_saves_nothing(runtime_for: object) -> None:
    runtime = runtime_for()  # type: ignore[operator]
    _, gid = _ask(runtime)
    tokenbus.request_cancel(runtime.redis, str(gid), ttl_s=60)
    run_generation(runtime, generation_id=str(gid))
    done = _done(runtime, gid)
    assert done["status"] == "cancelled" and done["finish_reason"] == "cancelled"
    assert done["message"] is None


def test_a_duplicate_job_does_nothing(runtime_for: object) -> None:
    runtime = runtime_for()  # type: ignore[operator]
    _, gid = _ask(runtime)
    run_generation(runtime, generation_id=str(gid))
    before = tokenbus.events(runtime.redis, str(gid))
    run_generation(runtime, generation_id=str(gid))  # the broker handed it out again
    assert tokenbus.events(runtime.redis, str(gid)) == before
    assert _done(runtime, gid)["finish_reason"] in ("stop", "length")


def test_a_question_deleted_before_the_claim_ends_the_answer_with_an_error(
    runtime_for: object,
) -> None:
    runtime = runtime_for()  # type: ignore[operator]
    chat_id, gid = _ask(runtime)
    with transaction(runtime.sessions) as session:
        for message in session.query(Conversation).filter_by(chat_id=chat_id):
            session.delete(message)
    run_generation(runtime, generation_id=str(gid))
    last = tokenbus.events(runtime.redis, str(gid))[-1]
    assert last.type == "error"
    assert last.json()["error"]["code"] == "generation_failed"
    assert "deleted" in last.json()["error"]["message"]
    with transaction(runtime.sessions) as session:
        row = session.get(Generation, gid)
        assert row is not None and row.status == "error"


def test_an_answer_nobody_waits_for_any_more_ends_at_its_claim(runtime_for: object) -> None:
    # The client left while the generation waited in the queue (its listener mark is
    # gone): the claim ends it as abandoned, before any prompt is built.
    runtime = runtime_for()  # type: ignore[operator]
    _, gid = _ask(runtime)
    runtime.redis.delete(tokenbus.seen_key(str(gid)))
    run_generation(runtime, generation_id=str(gid))
    kinds = [e.type for e in tokenbus.events(runtime.redis, str(gid))]
    assert kinds[-2:] == ["generation", "done"]
    done = _done(runtime, gid)
    assert done["status"] == "cancelled" and done["finish_reason"] == "abandoned"
    assert done["message"] is None
