"""The life of a generation: queued -> running -> done / cancelled / error.

Every transition happens here, as one operation that does the conditional update (two
processes racing to move one generation never both win), the stream event that goes with
it, the saved answer and the metric. The web tier starts, stops and sweeps; workers claim,
finish and fail. Nothing else writes a generation's status.

What happens when a worker dies:
- A prefork child killed mid-answer: Celery hands its job back at once (``acks_late``,
  ``reject_on_worker_lost``); the next child's :meth:`Lifecycle.claim` sees that the
  owner's process is gone from this host and takes the generation over (attempt + 1,
  a ``restart`` event so clients drop the partial text).
- A whole worker killed, or its host lost: its heartbeat goes stale after
  ``WORKER_STALE_S``; the sweep (``shared.generations.sweep``, run by every web process,
  with or without listeners) finds the generation and :meth:`Lifecycle.recover` queues it
  again while someone listens and attempts remain; otherwise it ends it with its partial
  answer saved. A job the broker hands out again later finds the generation
  moved on and does nothing.
- A job lost on the way (Redis restarted empty, a crash between the commit and the
  enqueue): the sweep sees a queued generation whose job marker is missing and enqueues
  it again.
- No live worker at all for ``QUEUE_TIMEOUT_S``: queued generations end with ``no_worker``.
  While a worker lives, a queued generation waits.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from shared import tokenbus, workers
from shared.chats.models import Conversation
from shared.chats.repository import ConversationRepository
from shared.chats.service import get_chat
from shared.db import single_statement_sessions, transaction, utcnow
from shared.errors import Conflict, QueueFull
from shared.generations.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    FinishReason,
    Generation,
    Status,
)
from shared.generations.repository import GenerationRepository
from shared.generations.schemas import generation_info, terminal_event
from shared.generations.service import queue_generation
from shared.generations.waiting import (
    no_worker_error,
    queue_estimate,
    queue_facts,
    record_duration,
)
from shared.metrics import count_generation_ended
from shared.settings import Settings

log = logging.getLogger(__name__)

JOBS_KEY = "chatbot:jobs"  # generation ids whose job is in the broker
#: How long a worker keeps trying to write a terminal event while Redis is down.
TERMINAL_RETRY_S = 30.0

#: Sends a generation's job to the workers: (generation id, request id).
Enqueue = Callable[[str, str | None], None]


@dataclass(frozen=True)
class Started:
    """The generation a stream request follows, and whether this request queued it."""

    generation_id: uuid.UUID
    created: bool


@dataclass(frozen=True)
class Stopped:
    """What ``POST /conversations/stop`` did: ``cancelled`` (ended now) or ``cancelling``
    (the running worker stops at its next token)."""

    generation_id: uuid.UUID
    status: str


def _status_for(reason: FinishReason) -> Status:
    if reason in (FinishReason.CANCELLED, FinishReason.ABANDONED):
        return Status.CANCELLED
    return Status.DONE


class Lifecycle:
    """Every transition of a generation, for one process (synchronous: the web tier calls
    it in its thread pool, workers directly)."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: redis.Redis,
        enqueue: Enqueue | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        # Starting and claiming, on the way to the first token, write one statement each.
        self._single = single_statement_sessions(sessions)
        self.redis = redis
        self._enqueue = enqueue

    # --- web tier ----------------------------------------------------------------------

    def start(
        self,
        *,
        owner: str | None,
        chat_id: uuid.UUID,
        kind: str,
        regenerate: bool,
        request_id: str | None,
        params: dict[str, Any] | None = None,
    ) -> Started:
        """Attach to the chat's queued or running generation, or queue a new one for its
        last Human message (``params``: its overrides, ``shared.generations.params``).
        Raises ``NotFound`` (also for another tenant's chat; ``owner`` None: the caller
        checked), ``Conflict`` (nothing to answer), ``NoWorker`` (nothing can answer a new
        one) or ``QueueFull``."""
        facts = queue_facts(self.redis)
        # No transaction: the unique index on a chat's active generation, not a snapshot,
        # keeps a second one out (the INSERT's ON CONFLICT). On Postgres the chat's facts
        # and the insert are one statement.
        with transaction(self._single) as session:
            chat, generation_id = queue_generation(
                session,
                chat_id=chat_id,
                owner=owner,
                may_queue=facts.workers_alive > 0,
                max_queued=self.settings.max_queued,
                regenerate=regenerate,
                kind=kind,
                model=self.settings.model,
                request_id=request_id,
                params=params,
            )
            if chat.active_id is not None:
                return Started(chat.active_id, created=False)
            if not facts.workers_alive:
                raise no_worker_error(self.redis)
            if (ahead := chat.queued) >= self.settings.max_queued:
                raise QueueFull(
                    f"{ahead} answers already wait for a worker (MAX_QUEUED): try again shortly",
                    retry_after_s=facts.estimate(ahead)["retry_after_s"],
                )
            chat.question_id(regenerate=regenerate)  # Conflict: nothing to answer
            if generation_id is None:  # another request queued one a moment ago
                active = GenerationRepository(session).active_for_chat(chat_id)
                if active is None:  # ... and it has ended already: ask again
                    raise Conflict(f"chat {chat_id} changed meanwhile: ask again")
                return Started(active.id, created=False)
        # Committed: only now may a worker see the job. In one round trip: count the
        # requester as a listener before any worker can look, say where it waits, and
        # mark the job as sent.
        gid = str(generation_id)
        with self.redis.pipeline(transaction=False) as pipe:
            tokenbus.mark_seen_queued(pipe, [gid], grace_s=self.settings.stream_grace_s)
            tokenbus.append_queued(
                pipe, gid, "queue", facts.estimate(ahead + 1), ttl_s=self.settings.stream_ttl_s
            )
            pipe.sadd(JOBS_KEY, gid)
            pipe.execute()
        self._send_job(gid, request_id)
        log.info("generation queued", extra={"generation_id": gid, "kind": kind})
        return Started(generation_id, created=True)

    def tell_position(self, generation_id: uuid.UUID, position: int) -> None:
        """A ``queue`` event for a generation that moved up the queue."""
        self._append(generation_id, "queue", queue_estimate(self.redis, position))

    def send(self, generation_id: uuid.UUID, request_id: str | None) -> None:
        """Put the generation's job in the broker (again), with its marker."""
        self.redis.sadd(JOBS_KEY, str(generation_id))
        self._send_job(str(generation_id), request_id)

    def _send_job(self, generation_id: str, request_id: str | None) -> None:
        if self._enqueue is None:
            raise RuntimeError("this process cannot enqueue jobs")
        self._enqueue(generation_id, request_id)

    def find(
        self, *, owner: str | None, chat_id: uuid.UUID, generation_id: uuid.UUID
    ) -> Generation | None:
        """The generation a ``Last-Event-ID`` names, if it belongs to this chat (``NotFound``
        for another tenant's chat)."""
        with transaction(self.sessions) as session:
            get_chat(session, chat_id=chat_id, owner=owner)
            generation = GenerationRepository(session).get(generation_id)
        if generation is None or generation.chat_id != chat_id:
            return None
        return generation

    def stop(self, *, owner: str | None, chat_id: uuid.UUID) -> Stopped:
        """Stop the chat's answer; the partial answer is kept. ``Conflict`` if none runs."""
        with transaction(self.sessions) as session:
            get_chat(session, chat_id=chat_id, owner=owner)
            active = GenerationRepository(session).active_for_chat(chat_id)
        if active is None:
            raise Conflict(f"chat {chat_id} has no answer in progress")
        gid = str(active.id)
        tokenbus.request_cancel(self.redis, gid, ttl_s=self.settings.stream_ttl_s)
        if active.status == Status.RUNNING:
            if workers.owner_state(self.redis, gid) is not workers.Owner.DEAD:
                return Stopped(active.id, "cancelling")
            # Its worker is dead: nobody will see the flag, end it here.
            self._end_abandoned_run(active, reason=FinishReason.CANCELLED)
            return Stopped(active.id, "cancelled")
        if self._end(
            active,
            from_=(Status.QUEUED,),
            status=Status.CANCELLED,
            reason=FinishReason.CANCELLED,
        ):
            return Stopped(active.id, "cancelled")
        return Stopped(active.id, "cancelling")  # a worker claimed it meanwhile

    def ensure_terminal(self, generation_id: uuid.UUID) -> None:
        """Give an ended generation's stream its terminal event if the stream lost it
        (Redis restarted empty before the worker could write it)."""
        with transaction(self.sessions) as session:
            generation = GenerationRepository(session).get(generation_id)
            if generation is None or generation.status not in FINAL_STATUSES:
                return
            events = tokenbus.events(self.redis, str(generation_id))
            if any(event.terminal for event in events):
                return
            kind, payload = terminal_event(session, generation)
        if self.redis.set(f"chatbot:gen:{{{generation_id}}}:closing", "1", nx=True, ex=30):
            tokenbus.append(
                self.redis, str(generation_id), kind, payload, ttl_s=self.settings.stream_ttl_s
            )

    # --- workers -----------------------------------------------------------------------

    def claim(
        self,
        generation_id: uuid.UUID,
        *,
        worker_id: str,
        model: str,
        read: Callable[[Session, Generation], None] | None = None,
        end_if_stopped: bool = False,
    ) -> Generation | None:
        """Move the generation to running for this worker (attempt + 1) and announce the
        attempt; None when there is nothing to do (ended, or another worker runs it).
        ``read(session, generation)``: what the worker needs next, read in the same
        session (it must not raise; if the database fails between the claim and the read,
        the generation runs with no owner on record, which the sweep ends as a dead
        worker's). ``end_if_stopped``: a generation stopped while it waited (a stop, or no
        listener left) ends here, with nothing said (None); the announcement reads the
        flag in the same round trip."""
        gid = str(generation_id)
        # No transaction: each write is one conditional UPDATE (from queued, or from a
        # dead worker's attempt), and the reads need no common snapshot.
        with transaction(self._single) as session:
            repository = GenerationRepository(session)
            # The usual case, a queued generation, in one statement.
            generation = repository.start_queued(generation_id, started_at=utcnow(), model=model)
            previous = Status.QUEUED
            if generation is None:
                generation = self._take_over(repository, generation_id, model=model)
                if generation is None:
                    return None
                previous = Status.RUNNING
            if read is not None:
                read(session, generation)
        too_many = generation.attempts > self.settings.max_attempts
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(JOBS_KEY, gid)
            workers.claim_ownership(pipe, gid, worker_id=worker_id, ttl_s=self._owner_ttl_s)
            ttl_s = self.settings.stream_ttl_s
            if previous == Status.RUNNING:
                # Its worker process died mid-answer: clients drop the partial text.
                data = {"attempt": generation.attempts}
                tokenbus.append_queued(pipe, gid, "restart", data, ttl_s=ttl_s)
            if not too_many:
                data = generation_info(generation)
                tokenbus.append_queued(
                    pipe, gid, "generation", data, ttl_s=ttl_s, check_listeners=end_if_stopped
                )
            replies = pipe.execute()
        if end_if_stopped and not too_many and (flag := tokenbus.as_text(replies[-1][1])):
            self.finish(generation, text="", sources=None, reason=FinishReason(flag))
            return None
        if too_many:
            self.fail(
                generation,
                code="too_many_attempts",
                message=f"gave up after {self.settings.max_attempts} attempts: "
                "the workers kept dying",
            )
            return None
        return generation

    def _take_over(
        self, repository: GenerationRepository, generation_id: uuid.UUID, *, model: str
    ) -> Generation | None:
        """Claim a running generation whose worker process died on this host (a killed
        prefork child); None if it ended or a live worker runs it (a duplicate job)."""
        generation = repository.get(generation_id)
        if generation is None or generation.status != Status.RUNNING:
            return None
        owner = workers.owner_state(self.redis, str(generation_id), same_host=True)
        if owner is not workers.Owner.DEAD:
            return None
        if not repository.transition(
            generation_id,
            from_=(Status.RUNNING,),
            attempt=generation.attempts,
            status=Status.RUNNING,
            attempts=generation.attempts + 1,
            started_at=utcnow(),
            model=model,
        ):
            return None
        repository.session.refresh(generation)
        return generation

    def finish(
        self,
        generation: Generation,
        *,
        text: str,
        sources: list[dict[str, Any]] | None,
        reason: FinishReason,
    ) -> None:
        """Save the answer (token counts and first-token time are read from
        ``generation``) and end the stream with ``done``."""
        status = _status_for(reason)
        self._end(
            generation,
            from_=(Status.RUNNING,),
            attempt=generation.attempts,
            status=status,
            reason=reason,
            text=text,
            sources=sources,
            values={
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
                "first_token_at": generation.first_token_at,
            },
        )

    def fail(
        self,
        generation: Generation,
        *,
        code: str,
        message: str,
        partial: str = "",
        attempt: int | None = None,
    ) -> bool:
        """End an active generation (on ``attempt``, if given) with an ``error`` event,
        keeping ``partial`` text."""
        log.warning("generation failed: %s", message, extra={"code": code})
        return self._end(
            generation,
            from_=ACTIVE_STATUSES,
            attempt=attempt,
            status=Status.ERROR,
            reason=None,
            text=partial,
            values={"error_code": code, "error": message},
        )

    # --- what happens when a worker dies ------------------------------------------------

    def recover(self, generation: Generation) -> None:
        """A running generation whose worker is dead: retry it, or end it keeping its
        partial answer."""
        gid = str(generation.id)
        if self.redis.exists(tokenbus.cancel_key(gid)):
            self._end_abandoned_run(generation, reason=FinishReason.CANCELLED)
        elif not tokenbus.has_listeners(self.redis, gid):
            self._end_abandoned_run(generation, reason=FinishReason.ABANDONED)
        elif generation.attempts >= self.settings.max_attempts:
            self.fail(
                generation,
                code="worker_lost",
                message=f"the workers answering this died {generation.attempts} times",
                partial=tokenbus.partial_text(tokenbus.events(self.redis, gid)),
            )
        else:
            self._retry(generation)

    def _retry(self, generation: Generation) -> None:
        with transaction(self.sessions) as session:
            moved = GenerationRepository(session).transition(
                generation.id,
                from_=(Status.RUNNING,),
                attempt=generation.attempts,
                status=Status.QUEUED,
                first_token_at=None,
            )
        if not moved:
            return
        gid = str(generation.id)
        log.warning("worker of generation %s died; queueing it again", gid)
        self.redis.delete(workers.owner_key(gid))
        self._append(generation.id, "restart", {"attempt": generation.attempts + 1})
        self.send(generation.id, generation.request_id)

    def _end_abandoned_run(self, generation: Generation, *, reason: FinishReason) -> None:
        """End a running generation whose worker is gone, saving what it had streamed."""
        partial = tokenbus.partial_text(tokenbus.events(self.redis, str(generation.id)))
        self._end(
            generation,
            from_=(Status.RUNNING,),
            attempt=generation.attempts,
            status=_status_for(reason),
            reason=reason,
            text=partial,
        )

    # --- the one way a generation ends --------------------------------------------------

    def _end(
        self,
        generation: Generation,
        *,
        from_: tuple[Status, ...],
        status: Status,
        reason: FinishReason | None,
        text: str = "",
        sources: list[dict[str, Any]] | None = None,
        attempt: int | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Move to a final status, save the answer, then write the terminal event and
        count it. False when another process ended it first."""
        now = utcnow()
        with transaction(self.sessions) as session:
            if not GenerationRepository(session).transition(
                generation.id,
                from_=from_,
                attempt=attempt,
                status=status,
                finished_at=now,
                **(values or {}),
            ):
                log.info("generation %s was ended elsewhere", generation.id)
                return False
            if text:
                ConversationRepository(session).add(
                    Conversation(
                        chat_id=generation.chat_id,
                        role="Assistant",
                        message=text,
                        generation_id=generation.id,
                        status=status,
                        sources=sources,
                        created_at=now,
                        updated_at=now,
                    )
                )
            row = GenerationRepository(session).get(generation.id)
            assert row is not None
            session.refresh(row)
            kind, payload = terminal_event(session, row, reason=reason)
        # After the commit: a client that sees the event can read the saved message.
        self._append(generation.id, kind, payload, retry_s=TERMINAL_RETRY_S)
        if row.started_at is not None and status == Status.DONE:
            record_duration(self.redis, (now - row.started_at).total_seconds())
        try:
            count_generation_ended(self.redis, kind=row.kind, status=status)
        except redis.RedisError as exc:
            log.warning("could not count the generation: %s", exc)
        log.info(
            "generation %s",
            status,
            extra={"reason": reason, "tokens": row.completion_tokens, "generation": str(row.id)},
        )
        return True

    def _append(
        self, generation_id: uuid.UUID, kind: tokenbus.EventType, data: Any, retry_s: float = 0
    ) -> None:
        """Append a life-cycle event; a terminal one is retried while Redis is away (a
        stream that still lacks it is completed from the database by ``ensure_terminal``)."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                tokenbus.append(
                    self.redis, str(generation_id), kind, data, ttl_s=self.settings.stream_ttl_s
                )
                return
            except redis.RedisError as exc:
                if time.monotonic() >= deadline:
                    if retry_s:
                        log.error("could not write the %s event: %s", kind, exc)
                        return
                    raise
                time.sleep(0.5)

    @property
    def _owner_ttl_s(self) -> int:
        return int(self.settings.generation_time_limit_s) + 600
