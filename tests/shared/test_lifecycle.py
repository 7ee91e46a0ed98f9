"""The life cycle of a generation, driven directly: real Postgres/SQLite and real Redis, no
worker process (the tests play the worker's part through the same calls it makes)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import event

from shared import tokenbus, workers
from shared.chats.models import Chat, Conversation
from shared.chats.repository import ConversationRepository
from shared.db import make_engine, make_sessionmaker, transaction, utcnow
from shared.errors import Conflict, NotFound, NoWorker, QueueFull
from shared.generations.lifecycle import JOBS_KEY, Lifecycle
from shared.generations.models import FinishReason, Generation, Status
from shared.generations.service import StartFacts, new_generation, queue_generation, start_facts
from shared.generations.sweep import Sweeper
from shared.generations.waiting import DURATIONS_KEY
from shared.settings import Settings
from tests.conftest import make_settings


class Harness:
    """A life cycle with an enqueue that records jobs, and helpers to play a worker."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings.sqlalchemy_url)
        self.sessions = make_sessionmaker(self.engine)
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.redis.flushdb()
        self.jobs: list[str] = []
        self.lifecycle = Lifecycle(
            settings=settings,
            sessions=self.sessions,
            redis=self.redis,
            enqueue=lambda gid, _rid: self.jobs.append(gid),
        )

    def chat(self, *roles: str) -> uuid.UUID:
        with transaction(self.sessions) as session:
            chat = Chat(name="t", created_at=utcnow(), updated_at=utcnow())
            session.add(chat)
            session.flush()
            for role in roles:
                session.add(
                    Conversation(
                        chat_id=chat.id,
                        role=role,
                        message=f"a {role} message",
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
            return chat.id

    def beat(self, worker_id: str = "host-x:1", *, at: float | None = None) -> None:
        self.redis.zadd(workers.WORKERS_KEY, {worker_id: at if at is not None else time.time()})

    def row(self, generation_id: uuid.UUID) -> Generation:
        with transaction(self.sessions) as session:
            generation = session.get(Generation, generation_id)
            assert generation is not None
            return generation

    def answers(self, chat_id: uuid.UUID) -> list[Conversation]:
        with transaction(self.sessions) as session:
            rows = session.query(Conversation).filter_by(chat_id=chat_id, role="Assistant")
            return list(rows)

    def events(self, generation_id: uuid.UUID) -> list[str]:
        return [e.type for e in tokenbus.events(self.redis, str(generation_id))]

    def token(self, generation_id: uuid.UUID, text: str) -> None:
        tokenbus.append(self.redis, str(generation_id), "token", text, ttl_s=60)


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    h = Harness(settings)
    yield h
    h.redis.flushdb()
    h.engine.dispose()


def test_start_queues_once_and_attaches_after(harness: Harness) -> None:
    harness.beat()
    chat_id = harness.chat("Human")
    first = harness.lifecycle.start(
        owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id="r"
    )
    again = harness.lifecycle.start(
        owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id="r"
    )
    assert first.created and not again.created
    assert again.generation_id == first.generation_id
    assert harness.jobs == [str(first.generation_id)]  # one job, after the commit
    assert harness.redis.sismember(JOBS_KEY, str(first.generation_id))
    assert harness.events(first.generation_id) == ["queue"]
    assert tokenbus.has_listeners(harness.redis, str(first.generation_id))


def test_concurrent_starts_make_one_generation(harness: Harness) -> None:
    """The attach race: many requests at once for one chat follow one generation."""
    harness.beat()
    chat_id = harness.chat("Human")
    results: list[uuid.UUID] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            started = harness.lifecycle.start(
                owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id=None
            )
            results.append(started.generation_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1 and len(harness.jobs) == 1


def test_start_refuses_what_cannot_be_answered(harness: Harness) -> None:
    chat_id = harness.chat("Human")
    with pytest.raises(NoWorker):
        harness.lifecycle.start(
            owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id=None
        )
    harness.beat()
    answered = harness.chat("Human", "Assistant")
    with pytest.raises(Conflict):
        harness.lifecycle.start(
            owner=None, chat_id=answered, kind="chat", regenerate=False, request_id=None
        )
    with pytest.raises(Conflict):
        harness.lifecycle.start(
            owner=None, chat_id=harness.chat(), kind="chat", regenerate=False, request_id=None
        )


def test_a_start_reads_the_chat_in_one_query_and_inserts_in_one_statement(
    harness: Harness,
) -> None:
    """``start_facts`` and ``new_generation``: the index refuses a second active
    generation (None, no error), a missing or foreign chat is ``NotFound``."""
    chat_id = harness.chat("Human", "Assistant")
    with transaction(harness.sessions) as session:
        facts = start_facts(session, chat_id=chat_id, owner=None)
        with pytest.raises(Conflict, match="already answered"):
            facts.question_id(regenerate=False)
        question = facts.question_id(regenerate=True)  # the last Human message
        assert session.get(Conversation, question).role == "Human"  # type: ignore[union-attr]

        def insert(chat: uuid.UUID) -> uuid.UUID | None:
            return new_generation(
                session, chat_id=chat, question_id=question, kind="chat", model="m", request_id=None
            )

        first = insert(chat_id)
        assert first is not None and insert(chat_id) is None
        again = start_facts(session, chat_id=chat_id, owner=None)
        assert again.active_id == first and again.queued == 1
        with pytest.raises(NotFound):
            start_facts(session, chat_id=chat_id, owner="another-tenant")
        with pytest.raises(NotFound):
            start_facts(session, chat_id=uuid.uuid4(), owner=None)
    with transaction(harness.sessions) as session, pytest.raises(NotFound):
        insert(uuid.uuid4())  # no such chat: the foreign key refuses it


def test_queue_generation_inserts_only_what_the_facts_allow(harness: Harness) -> None:
    """``queue_generation`` (one statement on Postgres): a generation only when there is
    a question, none is active, the queue has room and the caller may queue; the facts
    it returns are ``start_facts``'."""

    def queue(chat: uuid.UUID, **overrides: Any) -> tuple[StartFacts, uuid.UUID | None]:
        options: dict[str, Any] = {
            "owner": None,
            "may_queue": True,
            "max_queued": 10,
            "regenerate": False,
            **overrides,
        }
        with transaction(harness.sessions) as session:
            return queue_generation(
                session, chat_id=chat, kind="chat", model="m", request_id="r", **options
            )

    answered = harness.chat("Human", "Assistant")
    assert queue(answered)[1] is None  # already answered
    assert queue(harness.chat())[1] is None  # nothing asked
    asked = harness.chat("Human")
    assert queue(asked, may_queue=False)[1] is None  # no worker: nothing inserted
    assert queue(asked, max_queued=0)[1] is None  # no room
    facts, first = queue(asked)
    assert first is not None and facts.active_id is None
    assert harness.row(first).status == Status.QUEUED
    assert harness.row(first).request_id == "r"
    again, second = queue(asked)
    assert second is None and again.active_id == first  # one active generation per chat
    with transaction(harness.sessions) as session:
        assert start_facts(session, chat_id=asked, owner=None) == again
    facts, regenerated = queue(answered, regenerate=True)
    assert regenerated is not None
    assert harness.row(regenerated).question_id == facts.latest_human_id
    with pytest.raises(NotFound):
        queue(asked, owner="another-tenant")
    with pytest.raises(NotFound):
        queue(uuid.uuid4())


def test_history_is_the_newest_messages_up_to_the_question_in_order(harness: Harness) -> None:
    chat_id = harness.chat("Human", "Assistant", "Human", "Assistant", "Human")
    with transaction(harness.sessions) as session:
        rows = session.query(Conversation).filter_by(chat_id=chat_id)
        ordered = sorted(rows, key=lambda m: (m.created_at, m.id))
        messages = ConversationRepository(session)
        third = ordered[2].id
        assert [m.id for m in messages.history(chat_id, up_to=third, limit=10)] == [
            m.id for m in ordered[:3]
        ]
        assert [m.id for m in messages.history(chat_id, up_to=third, limit=2)] == [
            m.id for m in ordered[1:3]
        ]
        assert messages.history(chat_id, up_to=uuid.uuid4(), limit=10) == []  # question gone
        assert messages.history(uuid.uuid4(), up_to=third, limit=10) == []  # another chat


def _start(harness: Harness) -> tuple[uuid.UUID, uuid.UUID]:
    harness.beat()
    chat_id = harness.chat("Human")
    started = harness.lifecycle.start(
        owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id=None
    )
    return chat_id, started.generation_id


def test_claim_finish_saves_one_answer_and_ends_the_stream(harness: Harness) -> None:
    chat_id, gid = _start(harness)
    generation = harness.lifecycle.claim(gid, worker_id="host-x:1", model="m")
    assert generation is not None and generation.attempts == 1
    assert harness.lifecycle.claim(gid, worker_id="host-y:2", model="m") is None  # duplicate job
    harness.token(gid, "Hello")
    generation.completion_tokens = 1
    harness.lifecycle.finish(generation, text="Hello", sources=None, reason=FinishReason.STOP)
    harness.lifecycle.finish(generation, text="Hello", sources=None, reason=FinishReason.STOP)
    assert harness.row(gid).status == Status.DONE
    assert [a.message for a in harness.answers(chat_id)] == ["Hello"]
    assert harness.events(gid) == ["queue", "generation", "token", "done"]
    assert not harness.redis.sismember(JOBS_KEY, str(gid))


def test_stop_while_queued_ends_at_once(harness: Harness) -> None:
    chat_id, gid = _start(harness)
    stopped = harness.lifecycle.stop(owner=None, chat_id=chat_id)
    assert stopped.status == "cancelled"
    assert harness.row(gid).status == Status.CANCELLED
    assert harness.events(gid)[-1] == "done"
    assert harness.lifecycle.claim(gid, worker_id="host-x:1", model="m") is None
    with pytest.raises(Conflict):
        harness.lifecycle.stop(owner=None, chat_id=chat_id)


def test_stop_on_a_live_worker_raises_the_flag(harness: Harness) -> None:
    chat_id, gid = _start(harness)
    harness.lifecycle.claim(gid, worker_id="host-x:1", model="m")
    assert harness.lifecycle.stop(owner=None, chat_id=chat_id).status == "cancelling"
    assert harness.redis.exists(tokenbus.cancel_key(str(gid)))
    assert harness.row(gid).status == Status.RUNNING


def test_stop_on_a_dead_worker_ends_it_keeping_the_partial_answer(harness: Harness) -> None:
    chat_id, gid = _start(harness)
    harness.lifecycle.claim(gid, worker_id="host-x:1", model="m")
    harness.token(gid, "Half an ")
    harness.token(gid, "answer")
    harness.beat(at=time.time() - 60)  # its worker stopped beating a minute ago
    assert harness.lifecycle.stop(owner=None, chat_id=chat_id).status == "cancelled"
    assert harness.row(gid).status == Status.CANCELLED
    assert [a.message for a in harness.answers(chat_id)] == ["Half an answer"]
    assert harness.events(gid)[-1] == "done"


def test_sweep_retries_a_dead_workers_generation_while_someone_listens(
    harness: Harness,
) -> None:
    chat_id, gid = _start(harness)
    harness.lifecycle.claim(gid, worker_id="host-x:1", model="m")
    harness.token(gid, "lost text")
    harness.beat("host-x:1", at=time.time() - 60)
    harness.beat("host-y:2")  # another worker lives
    Sweeper(harness.lifecycle).sweep()
    assert harness.row(gid).status == Status.QUEUED
    assert harness.events(gid)[-1] == "restart"
    assert harness.jobs == [str(gid), str(gid)]  # queued again
    generation = harness.lifecycle.claim(gid, worker_id="host-y:2", model="m")
    assert generation is not None and generation.attempts == 2
    assert tokenbus.partial_text(tokenbus.events(harness.redis, str(gid))) == ""
    assert harness.answers(chat_id) == []


def test_sweep_gives_up_after_max_attempts(settings: Settings, tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path, database_url=settings.database_url, max_attempts=2))
    try:
        chat_id, gid = _start(harness)
        for attempt in (1, 2):
            harness.lifecycle.claim(gid, worker_id=f"host-x:{attempt}", model="m")
            harness.token(gid, f"try {attempt}")
            harness.beat(f"host-x:{attempt}", at=time.time() - 60)
            harness.redis.set(tokenbus.seen_key(str(gid)), "1")  # still listened to
            harness.redis.delete("chatbot:sweep:lock")
            Sweeper(harness.lifecycle).sweep()
        row = harness.row(gid)
        assert (row.status, row.error_code, row.attempts) == (Status.ERROR, "worker_lost", 2)
        assert harness.events(gid)[-1] == "error"
        assert [a.message for a in harness.answers(chat_id)] == ["try 2"]
    finally:
        harness.redis.flushdb()
        harness.engine.dispose()


def test_sweep_ends_an_unwatched_dead_generation_with_its_partial_answer(
    harness: Harness,
) -> None:
    chat_id, gid = _start(harness)
    harness.lifecycle.claim(gid, worker_id="host-x:1", model="m")
    harness.token(gid, "partial")
    harness.redis.delete(tokenbus.seen_key(str(gid)))  # nobody listens
    harness.beat("host-x:1", at=time.time() - 60)
    Sweeper(harness.lifecycle).sweep()
    assert harness.row(gid).status == Status.CANCELLED
    assert [(a.message, a.status) for a in harness.answers(chat_id)] == [("partial", "cancelled")]
    done = tokenbus.events(harness.redis, str(gid))[-1]
    assert done.type == "done" and done.json()["finish_reason"] == "abandoned"


def test_sweep_requeues_a_lost_job_and_leaves_live_work_alone(harness: Harness) -> None:
    _, lost = _start(harness)
    _, running = _start(harness)
    harness.lifecycle.claim(running, worker_id="host-x:1", model="m")
    harness.redis.srem(JOBS_KEY, str(lost))  # as if Redis restarted empty
    with transaction(harness.sessions) as session:
        row = session.get(Generation, lost)
        assert row is not None
        row.created_at = utcnow().replace(year=2020)
    Sweeper(harness.lifecycle).sweep()
    assert harness.jobs.count(str(lost)) == 2
    assert harness.row(running).status == Status.RUNNING  # its worker beats


def test_sweep_fails_queued_work_when_no_worker_lives(settings: Settings, tmp_path: Path) -> None:
    harness = Harness(
        make_settings(tmp_path, database_url=settings.database_url, queue_timeout_s=0.1)
    )
    try:
        _, gid = _start(harness)
        harness.redis.delete(workers.WORKERS_KEY)  # the only worker is gone
        with transaction(harness.sessions) as session:
            row = session.get(Generation, gid)
            assert row is not None
            row.created_at = utcnow().replace(year=2020)
        sweeper = Sweeper(harness.lifecycle)
        sweeper.sweep()  # notices: no worker
        time.sleep(0.2)
        harness.redis.delete("chatbot:sweep:lock")
        sweeper.sweep()
        row = harness.row(gid)
        assert (row.status, row.error_code) == (Status.ERROR, "no_worker")
        assert harness.events(gid)[-1] == "error"
    finally:
        harness.redis.flushdb()
        harness.engine.dispose()


def test_a_stream_that_lost_its_end_gets_it_from_the_database(harness: Harness) -> None:
    _, gid = _start(harness)
    generation = harness.lifecycle.claim(gid, worker_id="host-x:1", model="m")
    assert generation is not None
    harness.lifecycle.finish(generation, text="saved", sources=None, reason=FinishReason.STOP)
    harness.redis.delete(tokenbus.events_key(str(gid)))  # Redis restarted empty
    harness.lifecycle.ensure_terminal(gid)
    harness.lifecycle.ensure_terminal(gid)  # once only
    events = tokenbus.events(harness.redis, str(gid))
    assert [e.type for e in events] == ["done"]
    assert events[0].json()["message"]["message"] == "saved"


def test_a_prefork_child_that_died_is_taken_over_by_the_next(harness: Harness) -> None:
    _, gid = _start(harness)
    dead = f"{workers.this_process_id().rsplit(':', 1)[0]}:{2**22 + 12345}"  # no such pid
    harness.beat(dead)
    assert harness.lifecycle.claim(gid, worker_id=dead, model="m") is not None
    generation = harness.lifecycle.claim(gid, worker_id=workers.this_process_id(), model="m")
    assert generation is not None and generation.attempts == 2
    assert harness.events(gid)[-2:] == ["restart", "generation"]


def test_past_max_queued_a_new_answer_is_refused_with_a_retry_time(
    settings: Settings, tmp_path: Path
) -> None:
    harness = Harness(make_settings(tmp_path, database_url=settings.database_url, max_queued=2))
    try:
        harness.redis.lpush(DURATIONS_KEY, 4.0, 6.0)  # recent answers took 5 s on average
        first = _start(harness)[1]
        _start(harness)
        with pytest.raises(QueueFull) as refused:
            _start(harness)
        assert refused.value.status_code == 429 and refused.value.retry_after_s == 5
        # Once one is taken, there is room again.
        harness.lifecycle.claim(first, worker_id="host-x:1", model="m")
        assert _start(harness)[1]
    finally:
        harness.redis.flushdb()
        harness.engine.dispose()


def test_queued_answers_hear_their_position_as_the_queue_moves(harness: Harness) -> None:
    harness.redis.lpush(DURATIONS_KEY, 2.0)
    _, first = _start(harness)
    _, second = _start(harness)
    queued = tokenbus.events(harness.redis, str(second))[0].json()
    assert queued == {"position": 2, "estimated_wait_s": 4.0, "retry_after_s": 2}
    sweeper = Sweeper(harness.lifecycle)
    sweeper.sweep()  # learns the positions
    harness.lifecycle.claim(first, worker_id="host-x:1", model="m")
    harness.redis.delete("chatbot:sweep:lock")
    sweeper.sweep()
    moved = tokenbus.events(harness.redis, str(second))[-1]
    assert moved.type == "queue" and moved.json()["position"] == 1
    harness.redis.delete("chatbot:sweep:lock")
    sweeper.sweep()  # nothing moved: nothing more is sent
    assert len(tokenbus.events(harness.redis, str(second))) == 2


def test_start_and_claim_run_without_begin_and_commit(harness: Harness) -> None:
    # Each is on the way to the first token: two round trips fewer each.
    isolation: list[str | None] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        isolation.append(conn.get_execution_options().get("isolation_level"))

    chat_id = harness.chat("Human")
    harness.beat()
    event.listen(harness.engine, "before_cursor_execute", record)
    try:
        started = harness.lifecycle.start(
            owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id=None
        )
        at_start = len(isolation)
        claimed = harness.lifecycle.claim(started.generation_id, worker_id="host-x:1", model="m")
    finally:
        event.remove(harness.engine, "before_cursor_execute", record)
    assert claimed is not None and claimed.status == Status.RUNNING
    assert harness.row(started.generation_id).status == Status.RUNNING  # committed
    # The chat's facts and the insert: one statement on Postgres, two elsewhere.
    assert at_start == (1 if harness.engine.dialect.name == "postgresql" else 2)
    assert len(isolation) > at_start  # the claim
    assert set(isolation) == {"AUTOCOMMIT"}
