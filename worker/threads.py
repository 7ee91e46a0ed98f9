"""The CPU threads budget of a host: the worker processes on one host share its cores.

ggml's threads spin-wait, so two processes that each use every core of a host make each
other crawl (2 processes x 2 threads on 2 cores: 5.8 tok/s in aggregate, against 137 for
2 x 1). Each worker process that runs a generation says so in a per-host sorted set in
Redis (member: the worker id, score: a heartbeat); a generation then uses its share of the
cores, ``cores // running`` (the first ``cores % running`` workers by name take one more),
and never fewer than one thread. A lone generation gets every core. The share is refreshed
by a background thread and read locally by each evaluation, so the decode loop never
waits for Redis. A worker that starts or ends a generation says so on the host's pub/sub
channel, so the others' shares change within a round trip (spinning threads of two
processes on one core cost far more than a fraction of a second of a core); the thread also
refreshes every ``REFRESH_S`` in case a message was missed. A killed worker stops beating
and drops out of the count after ``STALE_S``. Cores that other processes keep busy (not
workers: a build, another service; ``worker.hostload``) are left to them too, since
spinning threads on a busy core are slower than fewer threads.

``THREADS=N`` overrides all of this with a fixed count; so does a GPU that runs every layer
(one thread: the CPU only feeds it, and more threads only spin).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import redis

from worker.engine import OFFLOADED_THREADS, Engine
from worker.hostload import HostLoad, available_cpus, cores_taken

log = logging.getLogger(__name__)

RUNNING_KEY = "chatbot:threads:{host}"
CHANGED_CHANNEL = "chatbot:threads:{host}:changed"
REFRESH_S = 0.25
STALE_S = 3.0
SUBSCRIBED_TIMEOUT_S = 5.0


def share(*, cores: int, running: list[str], worker_id: str) -> int:
    """Threads for ``worker_id`` when ``running`` (worker ids) run generations on a host.

    The cores are split evenly; the remainder goes to the first workers by name, so the
    shares add up to the cores whenever there are at least as many cores as generations.
    """
    members = sorted(set(running) | {worker_id})
    base, extra = divmod(max(cores, 1), len(members))
    return max(1, base + (1 if members.index(worker_id) < extra else 0))


def fixed_threads(setting: int, engine: Engine) -> int:
    """The threads every generation uses whatever the host does (0: the host's budget):
    ``THREADS``, else one when a GPU runs every layer of ``engine``'s model."""
    return setting or (OFFLOADED_THREADS if engine.offloaded else 0)


def running_key(host: str) -> str:
    return RUNNING_KEY.format(host=host)


def changed_channel(host: str) -> str:
    return CHANGED_CHANNEL.format(host=host)


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
        load: Callable[[bool], float] | None = None,
    ) -> None:
        """``load(starting)``: the cores other processes keep busy (``HostLoad.sample``)."""
        self.client = client
        self.worker_id = worker_id
        self.override = override
        self.cores = cores or available_cpus()
        host = host or socket.gethostname()
        self.key = running_key(host)
        self.channel = changed_channel(host)
        self._threads = override or self.cores
        self._load = load or HostLoad().sample
        self._pubsub: redis.client.PubSub | None = None  # the host's channel, kept
        self._refreshed_at = 0.0

    def sample_load(self) -> None:
        """Keep the host-load figure fresh while idle (the worker's heartbeat calls it), so
        a generation starts with a recent one."""
        if not self.override:
            self._load(False)

    def current(self) -> int:
        """The threads to use now (read locally: no Redis round trip)."""
        return self._threads

    def refresh(self, *, announce: bool = False) -> int:
        """Beat for this worker and recompute its share from the host's running set;
        ``announce``: tell the host's other workers to recompute theirs (it joined)."""
        now = time.time()
        self._refreshed_at = time.monotonic()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {self.worker_id: now})
            pipe.zremrangebyscore(self.key, "-inf", now - STALE_S)
            pipe.zrange(self.key, 0, -1)
            pipe.expire(self.key, int(STALE_S * 10))
            if announce:
                pipe.publish(self.channel, self.worker_id)
            members = pipe.execute()[2]
        running = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        mine = share(cores=self.cores, running=running, worker_id=self.worker_id)
        taken = cores_taken(self._load(announce))  # announce: this generation is starting
        self._threads = max(1, min(mine, self.cores - taken))
        return self._threads

    def leave(self) -> None:
        """Stop counting this worker; the others take its cores back at once."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrem(self.key, self.worker_id)
            pipe.publish(self.channel, self.worker_id)
            pipe.execute()

    def subscribe(self) -> None:
        """Open the host channel's subscription now, while no generation waits for it (the
        worker calls this when it loads). It is kept for the process's life: opening one
        per generation (a new connection and a round trip) was ~1.5 ms before each first
        token; what other workers said meanwhile is drained when a generation starts."""
        if not self.override:
            self._ready()

    @contextlib.contextmanager
    def running(self) -> Iterator[Callable[[], int]]:
        """Count this worker as running a generation; yields ``current`` for the engine."""
        if self.override:
            self._threads = self.override
            yield self.current
            return
        stop = threading.Event()
        try:
            self.refresh(announce=True)
        except redis.RedisError as exc:  # no budget is better than no answer
            log.warning("threads budget unavailable, using all cores: %s", exc)
            self._threads = self.cores
        else:
            # Subscribed and drained here, before the first evaluation, not by the thread:
            # a thread that connects or refreshes beside a starting evaluation stalls
            # ggml's spinning threads (a first token 30-50 ms later on 2 cores). What was
            # said before the announcement, the announcement's refresh already counted.
            self._ready()
        beat = threading.Thread(target=self._beat, args=(stop,), name="threads", daemon=True)
        beat.start()
        try:
            yield self.current
        finally:
            stop.set()
            with contextlib.suppress(redis.RedisError):
                self.client.publish(self.channel, "")  # wakes the thread (and, harmlessly, others)
            beat.join(timeout=5)  # before leaving: a last refresh would count it again
            with contextlib.suppress(redis.RedisError):
                self.leave()
            self._threads = self.cores

    def _ready(self) -> None:
        """The kept subscription, drained (or a new one if it broke or never opened)."""
        if self._pubsub is not None:
            try:
                while self._pubsub.get_message(timeout=0) is not None:
                    pass
                return
            except redis.RedisError:
                _close(self._pubsub)
                self._pubsub = None
        with contextlib.suppress(redis.RedisError):  # the thread tries again
            self._pubsub = self._subscribe()

    def _subscribe(self) -> redis.client.PubSub:
        pubsub: redis.client.PubSub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
        pubsub.subscribe(self.channel)
        pubsub.get_message(timeout=SUBSCRIBED_TIMEOUT_S)  # the confirmation: read it now
        return pubsub

    def _beat(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self._pubsub is None:
                    self._pubsub = self._subscribe()
                elif not self._others_spoke(self._pubsub) and not self._due():
                    continue  # only this worker's own announcement: nothing changed
                if stop.is_set():
                    return
                before, now = self._threads, self.refresh()
            except redis.RedisError as exc:
                log.warning("threads budget refresh failed: %s", exc)
                _close(self._pubsub)
                self._pubsub = None
                stop.wait(REFRESH_S)
                continue
            if now != before:
                log.info("threads %d -> %d", before, now, extra={"threads": now})

    def _others_spoke(self, pubsub: redis.client.PubSub) -> bool:
        """Waits up to ``REFRESH_S`` for a message of the host's channel; True if one came
        from elsewhere than this worker (its own announcements change nothing here)."""
        message = pubsub.get_message(timeout=REFRESH_S)
        spoke = False
        while message is not None:
            spoke = spoke or message.get("data") != self.worker_id.encode()
            message = pubsub.get_message(timeout=0)
        return spoke

    def _due(self) -> bool:
        """The periodic refresh is due (in case a message was missed)."""
        return time.monotonic() - self._refreshed_at >= REFRESH_S


def _close(pubsub: redis.client.PubSub | None) -> None:
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError):
            pubsub.close()
