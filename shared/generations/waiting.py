"""What a waiting generation is told: its place in the queue and the wait that recent
answers suggest, and why nothing can answer it."""

from __future__ import annotations

import logging
from typing import Any

import redis

from shared import workers
from shared.errors import NoWorker

log = logging.getLogger(__name__)

DURATIONS_KEY = "chatbot:recent-durations"  # seconds the last answers took, newest first
DURATIONS_KEPT = 50


def queue_estimate(
    client: redis.Redis, position: int, *, workers_alive: int | None = None
) -> dict[str, Any]:
    """The ``queue`` event: a position and the wait that recent answers suggest
    (``workers_alive``: the caller's count, to spare a read)."""
    recent = [float(x) for x in client.lrange(DURATIONS_KEY, 0, -1)]
    if workers_alive is None:
        workers_alive = workers.live_count(client)
    alive = max(workers_alive, 1)
    per_answer = sum(recent) / len(recent) if recent else None
    wait = None if per_answer is None else round(per_answer * position / alive, 1)
    return {
        "position": position,
        "estimated_wait_s": wait,
        "retry_after_s": max(1, round(wait / position)) if wait else 5,
    }


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
