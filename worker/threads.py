"""The CPU threads budget of a host: the worker processes on one host share its cores.

ggml's threads spin-wait, so two processes that each use every core of a host make each
other crawl (2 processes x 2 threads on 2 cores: 5.8 tok/s in aggregate, against 137 for
2 x 1). Each worker process that runs a generation says so in a per-host sorted set in
Redis (member: the worker id, score: a heartbeat); a generation then uses its share of the
cores, ``cores // running`` (the first ``cores % running`` workers by name take one more),
and never fewer than one thread. A lone generation gets every core. The share is refreshed
by a background thread a few times a second and read locally by each evaluation, so the
decode loop never waits for Redis, and a running generation gives up cores within
``REFRESH_S`` when another one starts on its host. A killed worker stops beating and drops
out of the count after ``STALE_S``.

``THREADS=N`` overrides all of this with a fixed count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import redis

log = logging.getLogger(__name__)

RUNNING_KEY = "chatbot:threads:{host}"
REFRESH_S = 0.25
STALE_S = 3.0


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share(*, cores: int, running: list[str], worker_id: str) -> int:
    """Threads for ``worker_id`` when ``running`` (worker ids) run generations on a host.

    The cores are split evenly; the remainder goes to the first workers by name, so the
    shares add up to the cores whenever there are at least as many cores as generations.
    """
    members = sorted(set(running) | {worker_id})
    base, extra = divmod(max(cores, 1), len(members))
    return max(1, base + (1 if members.index(worker_id) < extra else 0))


def running_key(host: str) -> str:
    return RUNNING_KEY.format(host=host)


class ThreadsBudget:
    """Chooses the threads of this worker process's generations (one at a time)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        worker_id: str,
        override: int = 0,
        cores: int | None = None,
        host: str | None = None,
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.override = override
        self.cores = cores or available_cpus()
        self.key = running_key(host or socket.gethostname())
        self._threads = override or self.cores

    def current(self) -> int:
        """The threads to use now (read locally: no Redis round trip)."""
        return self._threads

    def refresh(self) -> int:
        """Beat for this worker and recompute its share from the host's running set."""
        now = time.time()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {self.worker_id: now})
            pipe.zremrangebyscore(self.key, "-inf", now - STALE_S)
            pipe.zrange(self.key, 0, -1)
            pipe.expire(self.key, int(STALE_S * 10))
            _, _, members, _ = pipe.execute()
        running = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        self._threads = share(cores=self.cores, running=running, worker_id=self.worker_id)
        return self._threads

    def leave(self) -> None:
        self.client.zrem(self.key, self.worker_id)

    @contextlib.contextmanager
    def running(self) -> Iterator[Callable[[], int]]:
        """Count this worker as running a generation; yields ``current`` for the engine."""
        if self.override:
            self._threads = self.override
            yield self.current
            return
        stop = threading.Event()
        try:
            self.refresh()
        except redis.RedisError as exc:  # no budget is better than no answer
            log.warning("threads budget unavailable, using all cores: %s", exc)
            self._threads = self.cores
        beat = threading.Thread(target=self._beat, args=(stop,), name="threads", daemon=True)
        beat.start()
        try:
            yield self.current
        finally:
            stop.set()
            beat.join(timeout=5)
            with contextlib.suppress(redis.RedisError):
                self.leave()
            self._threads = self.cores

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(REFRESH_S):
            try:
                before, now = self._threads, self.refresh()
            except redis.RedisError as exc:
                log.warning("threads budget refresh failed: %s", exc)
                continue
            if now != before:
                log.info("threads %d -> %d", before, now, extra={"threads": now})
