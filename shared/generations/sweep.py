"""The sweep: finds the generations nobody looks after, with or without listeners, and
hands each to the life cycle (``Lifecycle.recover``, ``fail``, ``send``).

Every web process runs it every ``SWEEP_INTERVAL_S``; one at a time acts, under a Redis
lock. A worker process that stops beating is dead once its last beat is
``WORKER_STALE_S`` old, so a dead worker's generation is found within about 12 s.
"""

from __future__ import annotations

import logging
import time
import uuid

from shared import workers
from shared.db import transaction, utcnow
from shared.generations.lifecycle import JOBS_KEY, Lifecycle
from shared.generations.models import Generation, Status
from shared.generations.repository import GenerationRepository

log = logging.getLogger(__name__)

SWEEP_LOCK_KEY = "chatbot:sweep:lock"
SWEEP_INTERVAL_S = 2.0
#: A queued generation younger than this may still be on its way to the broker.
JOB_GRACE_S = 5.0


class Sweeper:
    """One web process's sweep. It remembers what it saw over several rounds (it may not
    hold the lock each time): how long no worker has lived, how long owners were unknown."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self._unknown_since: dict[uuid.UUID, float] = {}
        self._no_worker_since: float | None = None
        self._positions: dict[uuid.UUID, int] = {}

    def sweep(self) -> None:
        lifecycle = self.lifecycle
        now = time.monotonic()
        if workers.live_count(lifecycle.redis):
            self._no_worker_since = None
        elif self._no_worker_since is None:
            self._no_worker_since = now
        lock_ms = int(SWEEP_INTERVAL_S * 900)
        if not lifecycle.redis.set(SWEEP_LOCK_KEY, "1", nx=True, px=lock_ms):
            return
        with transaction(lifecycle.sessions) as session:
            active = GenerationRepository(session).active()
        unknown: set[uuid.UUID] = set()
        positions: dict[uuid.UUID, int] = {}
        for generation in active:
            try:
                if generation.status == Status.QUEUED:
                    positions[generation.id] = len(positions) + 1  # oldest first
                    self._queued(generation, now, positions[generation.id])
                elif self._owner_dead(generation, now, unknown):
                    self._unknown_since.pop(generation.id, None)
                    lifecycle.recover(generation)
            except Exception:
                log.exception("could not sweep generation %s", generation.id)
        for gid in set(self._unknown_since) - unknown:
            self._unknown_since.pop(gid, None)
        self._positions = positions

    def _queued(self, generation: Generation, now: float, position: int) -> None:
        lifecycle = self.lifecycle
        if self._positions.get(generation.id) not in (None, position):
            # Moved up the queue: tell its listeners (at most once a sweep, ~2 s).
            lifecycle.tell_position(generation.id, position)
        age_s = (utcnow() - generation.created_at).total_seconds()
        timeout = lifecycle.settings.queue_timeout_s
        if (
            self._no_worker_since is not None
            and now - self._no_worker_since >= timeout
            and age_s >= timeout
        ):
            lifecycle.fail(
                generation,
                code="no_worker",
                message=f"no worker was alive to answer for {timeout:g} s: start a worker",
            )
        elif age_s >= JOB_GRACE_S and not lifecycle.redis.sismember(JOBS_KEY, str(generation.id)):
            with transaction(lifecycle.sessions) as session:
                now_row = GenerationRepository(session).get(generation.id)
                if now_row is None or now_row.status != Status.QUEUED:
                    return  # a worker claimed it since the sweep read the list
            log.warning("generation %s lost its job; queueing it again", generation.id)
            lifecycle.send(generation.id, generation.request_id)

    def _owner_dead(self, generation: Generation, now: float, unknown: set[uuid.UUID]) -> bool:
        state = workers.owner_state(self.lifecycle.redis, str(generation.id))
        if state is workers.Owner.UNKNOWN:
            # No owner or no beats on record (Redis restarted): the worker records its
            # ownership again with its next beat; only a silence as long as a stale beat
            # counts.
            unknown.add(generation.id)
            first = self._unknown_since.setdefault(generation.id, now)
            return now - first >= workers.WORKER_STALE_S
        return state is workers.Owner.DEAD
