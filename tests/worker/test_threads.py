"""The host's threads budget: arithmetic, the Redis registry, and the engine asking it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import pytest
import redis

from shared.settings import Settings
from worker.engine import OFFLOADED_THREADS, ChatMessage, Engine, SamplingParams, load_engine
from worker.engine.ctransformers_engine import PROMPT_BATCH_SIZE
from worker.threads import STALE_S, ThreadsBudget, fixed_threads, share


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def budget(
    client: redis.Redis, host: str, worker_id: str, cores: int, busy_elsewhere: float = 0.0
) -> ThreadsBudget:
    return ThreadsBudget(
        client, worker_id=worker_id, cores=cores, host=host, load=lambda _: busy_elsewhere
    )


@pytest.mark.parametrize(
    ("cores", "running", "expected"),
    [
        (2, 1, [2]),
        (2, 2, [1, 1]),
        (4, 2, [2, 2]),
        (4, 3, [2, 1, 1]),  # the remainder goes to the first by name: no core idle
        (16, 3, [6, 5, 5]),
        (2, 3, [1, 1, 1]),  # never fewer than one thread
        (1, 1, [1]),
    ],
)
def test_share_splits_the_cores(cores: int, running: int, expected: list[int]) -> None:
    workers = [f"host:{pid}" for pid in range(100, 100 + running)]
    shares = [share(cores=cores, running=workers, worker_id=w) for w in workers]
    assert shares == expected


def test_a_lone_generation_gets_every_core(client: redis.Redis) -> None:
    one = budget(client, f"h-{uuid.uuid4().hex}", "h:1", cores=8)
    with one.running() as threads:
        assert threads() == 8


def test_two_workers_on_one_host_get_half_each(client: redis.Redis) -> None:
    host = f"h-{uuid.uuid4().hex}"
    a, b = budget(client, host, "h:1", cores=4), budget(client, host, "h:2", cores=4)
    elsewhere = budget(client, f"other-{uuid.uuid4().hex}", "o:1", cores=4)
    with a.running() as threads_a, elsewhere.running() as threads_other:
        assert threads_a() == 4
        with b.running() as threads_b:
            assert threads_b() == 2
            deadline = time.monotonic() + 10
            while threads_a() != 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # a learns of b at its next refresh, without asking
            assert threads_a() == 2
            assert threads_other() == 4  # another host is not counted
        assert a.refresh() == 4  # b ended: a gets every core back


def test_workers_learn_of_each_other_by_message_not_by_the_clock(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the periodic refresh an hour away, only the host's channel can tell a of b.
    monkeypatch.setattr("worker.threads.REFRESH_S", 3600.0)
    host = f"h-{uuid.uuid4().hex}"
    a, b = budget(client, host, "h:1", cores=2), budget(client, host, "h:2", cores=2)

    def becomes(threads: Callable[[], int], value: int) -> bool:
        deadline = time.monotonic() + 10  # a wide "not a hang" guard
        while threads() != value and time.monotonic() < deadline:
            time.sleep(0.01)
        return threads() == value

    with a.running() as threads_a:
        assert threads_a() == 2
        time.sleep(0.2)  # a's thread is subscribed and waiting
        with b.running() as threads_b:
            assert threads_b() == 1
            assert becomes(threads_a, 1)  # b started: a gave up a core
        assert becomes(threads_a, 2)  # b ended: a took it back
        assert client.zrange(a.key, 0, -1) == [b"h:1"]


def test_the_budget_is_subscribed_before_the_first_evaluation_and_its_thread_sleeps(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread that connects or refreshes beside a starting evaluation stalls ggml's
    # spinning threads: the generation's first token came 30-50 ms later on 2 cores.
    monkeypatch.setattr("worker.threads.REFRESH_S", 3600.0)
    one = budget(client, f"h-{uuid.uuid4().hex}", "h:1", cores=2)
    refreshes = []
    refresh = one.refresh
    monkeypatch.setattr(one, "refresh", lambda **kw: refreshes.append(kw) or refresh(**kw))
    with one.running() as threads:
        assert client.pubsub_numsub(one.channel) == [(one.channel.encode(), 1)]
        time.sleep(0.3)  # what the thread would do at once, it would have done by now
        assert refreshes == [{"announce": True}]  # the announcement only, before the yield
        assert threads() == 2


def test_the_host_channel_is_subscribed_once_per_process(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A subscription per generation was a new connection and a round trip before each
    # first token; the worker opens it when it loads and keeps it.
    monkeypatch.setattr("worker.threads.REFRESH_S", 3600.0)
    one = budget(client, f"h-{uuid.uuid4().hex}", "h:1", cores=2)
    subscribes: list[int] = []
    refreshes: list[dict[str, bool]] = []
    subscribe, refresh = one._subscribe, one.refresh
    monkeypatch.setattr(one, "_subscribe", lambda: subscribes.append(1) or subscribe())
    monkeypatch.setattr(one, "refresh", lambda **kw: refreshes.append(kw) or refresh(**kw))
    one.subscribe()  # as the worker does when it loads
    assert client.pubsub_numsub(one.channel) == [(one.channel.encode(), 1)]
    for _ in range(2):
        with one.running() as threads:
            time.sleep(0.3)  # its own announcement has reached the kept subscription
            assert threads() == 2
    assert subscribes == [1]
    assert refreshes == [{"announce": True}] * 2  # its own announcements woke nothing


def test_a_killed_worker_drops_out_of_the_count(client: redis.Redis) -> None:
    host = f"h-{uuid.uuid4().hex}"
    dead = budget(client, host, "h:dead", cores=2)
    dead.refresh()  # it beat once, then was killed (no leave)
    alive = budget(client, host, "h:alive", cores=2)
    assert alive.refresh() == 1
    client.zadd(dead.key, {"h:dead": time.time() - STALE_S - 1})  # its beat went stale
    assert alive.refresh() == 2


@pytest.mark.parametrize(
    ("cores", "busy_elsewhere", "expected"),
    [
        (2, 0.3, 2),  # the web tier and Redis beside the worker: keep every core
        (2, 1.0, 1),  # another process keeps a core busy: leave it alone
        (2, 2.0, 1),  # never fewer than one thread
        (8, 2.8, 5),
    ],
)
def test_cores_busy_with_other_processes_are_left_to_them(
    client: redis.Redis, cores: int, busy_elsewhere: float, expected: int
) -> None:
    lone = budget(
        client, f"h-{uuid.uuid4().hex}", "h:1", cores=cores, busy_elsewhere=busy_elsewhere
    )
    with lone.running() as threads:
        assert threads() == expected


def test_threads_setting_overrides_the_budget(client: redis.Redis) -> None:
    host = f"h-{uuid.uuid4().hex}"
    fixed = ThreadsBudget(
        client, worker_id="h:1", cores=8, host=host, override=3, load=lambda _: 8.0
    )
    with fixed.running() as threads:
        assert threads() == 3
        assert client.zcard(fixed.key) == 0  # not counted: the operator chose


@pytest.mark.parametrize(
    ("setting", "offloaded", "expected"),
    [(0, False, 0), (0, True, OFFLOADED_THREADS), (3, True, 3), (3, False, 3)],
)
def test_a_gpu_that_runs_every_layer_fixes_the_threads_at_one(
    setting: int, offloaded: bool, expected: int
) -> None:
    engine = cast(Engine, SimpleNamespace(offloaded=offloaded))
    assert fixed_threads(setting, engine) == expected
    assert OFFLOADED_THREADS == 1


def test_an_unreachable_redis_means_all_cores_not_a_failure() -> None:
    nowhere = redis.Redis(port=1, socket_connect_timeout=0.2)
    lone = ThreadsBudget(nowhere, worker_id="h:1", cores=2, host="h", load=lambda _: 0.0)
    with lone.running() as threads:
        assert threads() == 2


def test_the_engine_asks_the_budget_before_each_evaluation(model_settings: Settings) -> None:
    engine = load_engine(model_settings)
    asked: list[int] = []

    def threads() -> int:
        asked.append(1)
        return 1

    prompt = engine.render_prompt([ChatMessage("user", "Count from one to ten.")])
    params = SamplingParams(temperature=0.0, max_new_tokens=6, repetition_penalty=1.0)
    with engine.stream(prompt, params, threads=threads) as stream:
        text = "".join(stream)
    assert text
    assert stream.finish_reason == "length"
    # One evaluation for the prompt, one per sampled token but the last (nothing follows).
    assert len(asked) == 1 + stream.completion_tokens - 1


def test_a_token_is_streamed_before_it_is_evaluated(model_settings: Settings) -> None:
    # Evaluating a token takes a decode step: the client gets it that much sooner.
    engine = load_engine(model_settings)
    asked: list[int] = []

    def threads() -> int:
        asked.append(1)
        return 1

    prompt = engine.render_prompt([ChatMessage("user", "Count from one to ten.")])
    params = SamplingParams(temperature=0.0, max_new_tokens=6, repetition_penalty=1.0)
    with engine.stream(prompt, params, threads=threads) as stream:
        pieces = iter(stream)
        assert next(pieces)
        assert len(asked) == 1  # the prompt only
        assert next(pieces)
        assert len(asked) <= 1 + stream.completion_tokens - 1


def test_a_long_prompt_asks_the_budget_before_each_batch(model_settings: Settings) -> None:
    # A prompt of seconds must not hold its threads while another worker starts beside it.
    engine = load_engine(model_settings)
    asked: list[int] = []

    def threads() -> int:
        asked.append(1)
        return 2

    words = " ".join(f"word{i}" for i in range(300))
    prompt = engine.render_prompt([ChatMessage("user", f"Repeat the last word: {words}")])
    batches = -(-len(prompt) // PROMPT_BATCH_SIZE)
    assert batches >= 3
    params = SamplingParams(temperature=0.0, max_new_tokens=2, repetition_penalty=1.0)
    with engine.stream(prompt, params, threads=threads) as stream:
        assert "".join(stream)
    evaluated_tokens = stream.completion_tokens - (stream.finish_reason == "length")
    assert len(asked) == batches + evaluated_tokens
