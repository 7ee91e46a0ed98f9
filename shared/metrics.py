"""Worker metrics kept in Redis, so that any web process on any host can report them.

Workers add to a few Redis hashes once per generation (never per token): see
``worker.metrics``. ``/metrics`` on a web process reads them all in one pipelined round
trip (:func:`read_snapshot`) and renders them next to its own request metrics. They are
cluster-wide numbers: every web process reports the same totals, so aggregate them with
``max()`` (or scrape one web process), not ``sum()``.

Layout: one hash per metric family, ``chatbot:metrics:<family name>``.
- counters: field ``<label values joined by "|">`` → count.
- histograms: field ``<label values>|<upper bound>`` → observations that fell in that
  bucket (per bucket, not cumulative; ``+Inf`` holds the rest), plus
  ``<label values>|sum`` and ``<label values>|count``.
Label values are fixed words (kind, status, outcome), never free text.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from shared.queue import INFERENCE_QUEUE
from shared.workers import WORKER_STALE_S, WORKERS_KEY

KEY_PREFIX = "chatbot:metrics:"
SEPARATOR = "|"
INF = "+Inf"


@dataclass(frozen=True)
class Family:
    """A metric family the workers record. ``buckets`` set: a histogram; empty: a counter
    (its Prometheus name gets ``_total``)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def is_histogram(self) -> bool:
        return bool(self.buckets)

    def key(self, prefix: str = KEY_PREFIX) -> str:
        return prefix + self.name

    def bucket_field(self, value: float, label_values: tuple[str, ...]) -> str:
        """The field of the bucket ``value`` falls in (upper bounds are inclusive)."""
        index = bisect_left(self.buckets, value)
        bound = INF if index == len(self.buckets) else repr(float(self.buckets[index]))
        return SEPARATOR.join((*label_values, bound))


LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_GAP_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 0.5, 1.0)
WEB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)

GENERATIONS = Family(
    "chatbot_generations",
    "Generations ended by a worker, by kind and final status (done, cancelled, error).",
    ("kind", "status"),
)
RESTARTS = Family(
    "chatbot_generation_restarts",
    "Generations started over because the worker running them was lost.",
    ("kind",),
)
COMPLETION_TOKENS = Family(
    "chatbot_generated_tokens", "Tokens generated (completion tokens).", ("kind",)
)
PROMPT_TOKENS = Family("chatbot_prompt_tokens", "Prompt tokens read by the model.", ("kind",))
SEARCHES = Family(
    "chatbot_web_searches",
    "Web searches for internet answers, by outcome (ok, cached, error).",
    ("outcome",),
)
PAGES = Family(
    "chatbot_web_pages",
    "Result pages read for internet answers, by outcome (ok, cached, error).",
    ("outcome",),
)
QUEUE_WAIT = Family(
    "chatbot_queue_wait_seconds",
    "From a generation being queued to a worker starting it (web and worker clocks).",
    ("kind",),
    QUEUE_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Family(
    "chatbot_time_to_first_token_seconds",
    "From a worker starting a generation to its first token (internet answers: with the "
    "web search).",
    ("kind",),
    LATENCY_BUCKETS,
)
INTER_TOKEN = Family(
    "chatbot_inter_token_seconds",
    "Time between consecutive tokens of a generation.",
    ("kind",),
    TOKEN_GAP_BUCKETS,
)
SEARCH_SECONDS = Family(
    "chatbot_web_search_duration_seconds",
    "Time a web search took (cache hits not counted).",
    (),
    WEB_BUCKETS,
)
FETCH_SECONDS = Family(
    "chatbot_web_fetch_duration_seconds",
    "Time to read the result pages of one answer, fetched concurrently (cache hits not counted).",
    (),
    WEB_BUCKETS,
)

FAMILIES: tuple[Family, ...] = (
    GENERATIONS,
    RESTARTS,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    SEARCHES,
    PAGES,
    QUEUE_WAIT,
    TIME_TO_FIRST_TOKEN,
    INTER_TOKEN,
    SEARCH_SECONDS,
    FETCH_SECONDS,
)


def queue_keys(queue: str = INFERENCE_QUEUE) -> list[str]:
    """The Redis lists kombu keeps a queue in: the queue itself and one per priority step
    (``inference\\x06\\x163`` and so on)."""
    keys = []
    for step in PRIORITY_STEPS:
        key = f"{queue}{Channel.sep}{step}" if step else queue
        if key not in keys:
            keys.append(key)
    return keys


@dataclass(frozen=True)
class Snapshot:
    """Everything ``/metrics`` shows about the workers, read at one moment."""

    values: dict[str, dict[str, float]]  # family name -> field -> value
    queue_depth: int  # jobs waiting in the queue
    unacked: int  # jobs workers have taken and not yet finished (all queues of this Redis)
    workers: int  # worker processes with a loaded model that beat recently


async def read_snapshot(
    client: aioredis.Redis, *, prefix: str = KEY_PREFIX, queue: str = INFERENCE_QUEUE
) -> Snapshot:
    """Read the worker metrics, queue depth and live workers in one round trip."""
    keys = queue_keys(queue)
    async with client.pipeline(transaction=False) as pipe:
        for family in FAMILIES:
            pipe.hgetall(family.key(prefix))
        for key in keys:
            pipe.llen(key)
        pipe.hlen(Channel.unacked_key)
        pipe.zcount(WORKERS_KEY, time.time() - WORKER_STALE_S, "+inf")
        results = await pipe.execute()
    hashes, rest = results[: len(FAMILIES)], results[len(FAMILIES) :]
    values = {
        family.name: {_text(k): float(v) for k, v in raw.items()}
        for family, raw in zip(FAMILIES, hashes, strict=True)
    }
    return Snapshot(
        values=values,
        queue_depth=sum(int(n) for n in rest[: len(keys)]),
        unacked=int(rest[len(keys)]),
        workers=int(rest[len(keys) + 1]),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def count_generation_ended(
    client: redis.Redis, *, kind: str, status: str, prefix: str = KEY_PREFIX
) -> None:
    """Count an ended generation (the life cycle does, whichever process ended it)."""
    client.hincrby(GENERATIONS.key(prefix), SEPARATOR.join((kind, status)), 1)
