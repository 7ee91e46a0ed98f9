"""What a waiting generation is told: its place in the queue and the wait that recent
answers suggest, and why nothing can answer it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared import workers
from shared.errors import NoWorker

log = logging.getLogger(__name__)

DURATIONS_KEY = "chatbot:recent-durations"  # seconds the last answers took, newest first
DURATIONS_KEPT = 50


@dataclass(frozen=True)
class QueueFacts:
    """What the estimates are made from, read in one round trip (``queue_facts``)."""

    workers_alive: int
    recent_s: list[float]
    """Seconds the last answers took, newest first."""

    def estimate(self, position: int) -> dict[str, Any]:
        """The ``queue`` event: a position and the wait that recent answers suggest."""
        alive = max(self.workers_alive, 1)
        recent = self.recent_s
        per_answer = sum(recent) / len(recent) if recent else None
        wait = None if per_answer is None else round(per_answer * position / alive, 1)
        return {
            "position": position,
            "estimated_wait_s": wait,
            "retry_after_s": max(1, round(wait / position)) if wait else 5,
        }


def queue_facts(client: redis.Redis) -> QueueFacts:
    """Live workers and recent answer durations, in one round trip."""
    with client.pipeline(transaction=False) as pipe:
        pipe.zcount(workers.WORKERS_KEY, time.time() - workers.WORKER_STALE_S, "+inf")
        pipe.lrange(DURATIONS_KEY, 0, -1)
        alive, recent = pipe.execute()
    return QueueFacts(int(alive), [float(x) for x in recent])


def queue_estimate(client: redis.Redis, position: int) -> dict[str, Any]:
    """The ``queue`` event for ``position`` (see ``QueueFacts.estimate``)."""
    return queue_facts(client).estimate(position)


def record_duration(client: redis.Redis, seconds: float) -> None:
    """Remember how long an answer took, for the estimates."""
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(DURATIONS_KEY, round(seconds, 3))
            pipe.ltrim(DURATIONS_KEY, 0, DURATIONS_KEPT - 1)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not record the answer's duration: %s", exc)


def no_worker_error(client: redis.Redis) -> NoWorker:
    """The 503 that says why no worker can answer."""
    reason = client.get(workers.MODEL_ERROR_KEY)
    if reason:
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        return NoWorker(f"no model is available: the workers could not load it ({text})")
    return NoWorker(
        "no worker is running to answer: start one with 'chatbot worker' (or 'chatbot up')"
    )
