"""The benchmarks wait for every worker to sample the host's load before an answer that
must not count what ran before it (``Stack.settle``)."""

from __future__ import annotations

import os
import threading
import time

import redis

from bench.stack import Stack
from shared.workers import WORKERS_KEY
from worker.hostload import MIN_WINDOW_S


def test_settle_waits_until_every_worker_has_beaten_since_and_a_window_more() -> None:
    stack = Stack(env={"REDIS_URL": os.environ["REDIS_URL"]})
    client: redis.Redis = stack.redis
    client.delete(WORKERS_KEY)
    before = time.time() - 1
    client.zadd(WORKERS_KEY, {"a": before, "b": before})
    beats: dict[str, float] = {}

    def beat(worker: str, after_s: float) -> None:
        time.sleep(after_s)
        beats[worker] = time.monotonic()
        client.zadd(WORKERS_KEY, {worker: time.time()})

    threads = [threading.Thread(target=beat, args=(w, s)) for w, s in (("a", 0.2), ("b", 0.6))]
    try:
        for thread in threads:
            thread.start()
        stack.settle()
        settled = time.monotonic()
    finally:
        for thread in threads:
            thread.join()
        client.delete(WORKERS_KEY)
    # Not before the last worker's beat, and a whole sampling window after it.
    assert settled - beats["b"] >= MIN_WINDOW_S
