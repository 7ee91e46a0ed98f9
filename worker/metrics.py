"""What a worker records about its generations, for ``/metrics`` on the web tier.

A :class:`Recorder` gathers one generation's numbers in memory (counts, histogram
buckets, the gap between every two tokens) and writes them to Redis once, when the
generation ends: a few ``HINCRBY`` in one pipelined round trip, never a Redis call per
token. The layout is ``shared.metrics``'s.

Code deep in a generation (the token loop, the internet pipeline) reports through the
module functions below; they find the generation's recorder in a context variable and do
nothing outside a generation (unit tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime

import redis

from shared.metrics import (
    COMPLETION_TOKENS,
    FETCH_SECONDS,
    INTER_TOKEN,
    KEY_PREFIX,
    PAGES,
    PROMPT_TOKENS,
    QUEUE_WAIT,
    RESTARTS,
    SEARCH_SECONDS,
    SEARCHES,
    SEPARATOR,
    TIME_TO_FIRST_TOKEN,
    Family,
)

log = logging.getLogger(__name__)


class Recorder:
    """One generation's metric increments, written to Redis by :meth:`flush`."""

    def __init__(self, *, kind: str = "chat", prefix: str = KEY_PREFIX) -> None:
        self.kind = kind
        self.prefix = prefix
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self._started: float | None = None
        self._last_token: float | None = None

    def count(self, family: Family, *label_values: str, n: int = 1) -> None:
        if n:
            self._counts[family.key(self.prefix), SEPARATOR.join(label_values)] += n

    def observe(self, family: Family, value: float, *label_values: str) -> None:
        key = family.key(self.prefix)
        self._counts[key, family.bucket_field(value, label_values)] += 1
        self._counts[key, SEPARATOR.join((*label_values, "count"))] += 1
        self._sums[key, SEPARATOR.join((*label_values, "sum"))] += value

    def started(self, *, queued_at: datetime | None, started_at: datetime | None) -> None:
        """The worker starts the generation now: the time-to-first-token clock starts."""
        self._started = time.perf_counter()
        self._last_token = None
        if queued_at is not None and started_at is not None:
            wait = (started_at - queued_at).total_seconds()
            self.observe(QUEUE_WAIT, max(wait, 0.0), self.kind)

    def token(self) -> None:
        """A token was produced (called once per token; a clock read and a dict update)."""
        now = time.perf_counter()
        if self._last_token is not None:
            self.observe(INTER_TOKEN, now - self._last_token, self.kind)
        elif self._started is not None:
            self.observe(TIME_TO_FIRST_TOKEN, now - self._started, self.kind)
        self._last_token = now

    def flush(self, client: redis.Redis) -> None:
        """Write everything recorded so far in one round trip, then forget it.

        A Redis failure loses these numbers, never the generation."""
        if not self._counts and not self._sums:
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                for (key, field), n in self._counts.items():
                    pipe.hincrby(key, field, n)
                for (key, field), value in self._sums.items():
                    pipe.hincrbyfloat(key, field, value)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not record metrics: %s", exc)
        self._counts.clear()
        self._sums.clear()


_current: ContextVar[Recorder | None] = ContextVar("metrics_recorder", default=None)


@contextlib.contextmanager
def recording(client: redis.Redis, *, prefix: str = KEY_PREFIX) -> Iterator[Recorder]:
    """Record what happens inside (one generation), and write it to Redis at the end."""
    recorder = Recorder(prefix=prefix)
    token = _current.set(recorder)
    try:
        yield recorder
    finally:
        _current.reset(token)
        recorder.flush(client)


def generation_started(
    *, kind: str, queued_at: datetime | None, started_at: datetime | None, attempt: int
) -> None:
    if (recorder := _current.get()) is not None:
        recorder.kind = kind
        recorder.started(queued_at=queued_at, started_at=started_at)
        if attempt > 1:
            recorder.count(RESTARTS, kind)


def token() -> None:
    if (recorder := _current.get()) is not None:
        recorder.token()


def tokens_used(*, prompt_tokens: int, completion_tokens: int) -> None:
    """The tokens a generation read and wrote (its end is counted by the life cycle)."""
    if (recorder := _current.get()) is not None:
        recorder.count(PROMPT_TOKENS, recorder.kind, n=prompt_tokens)
        recorder.count(COMPLETION_TOKENS, recorder.kind, n=completion_tokens)


def web_search(*, outcome: str, seconds: float | None = None) -> None:
    """``outcome``: ok, cached or error; ``seconds`` for searches that ran."""
    if (recorder := _current.get()) is not None:
        recorder.count(SEARCHES, outcome)
        if seconds is not None:
            recorder.observe(SEARCH_SECONDS, seconds)


def web_pages(*, ok: int, cached: int, failed: int, seconds: float | None = None) -> None:
    """Pages read for one answer; ``seconds``: how long fetching the uncached ones took."""
    if (recorder := _current.get()) is not None:
        recorder.count(PAGES, "ok", n=ok)
        recorder.count(PAGES, "cached", n=cached)
        recorder.count(PAGES, "error", n=failed)
        if seconds is not None:
            recorder.observe(FETCH_SECONDS, seconds)
