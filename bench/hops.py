"""The steps before a first token, each timed alone with the project's own code, in this
process, against a real stack's Postgres and Redis and one real worker process.

- ``start``: what the web tier does per answer (``Lifecycle.start``: the generation row
  in one transaction, the listener mark, ``queue`` event and job marker, ``send_task``);
- ``send_task``: the Celery enqueue alone (part of ``start``);
- ``pickup_and_claim``: ``start`` returned -> the worker's ``generation`` event is read
  here (broker delivery, the prefork hand-off, the claim);
- ``claim``: ``Lifecycle.claim`` alone (no broker);
- ``history``: the worker reading the chat's messages;
- ``prompt``: fitting and tokenizing the prompt (``fit_messages``).

The client-side view of the same path (web hop, queue, worker to first token, delivery)
is ``bench/pipeline.py``'s ``hops_ms_p50``.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.stack import Stack, running


def _p50(samples: list[float]) -> float:
    return round(statistics.median(samples), 2)


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def run(*, rounds: int = 20, warmup: int = 3) -> dict[str, Any]:
    with running(workers=1, MAX_NEW_TOKENS="1") as stack:
        return _measure(stack, rounds, warmup)


def _measure(stack: Stack, rounds: int, warmup: int) -> dict[str, Any]:
    from shared import tokenbus
    from shared.db import engine_from_settings, make_sessionmaker, transaction
    from shared.generations.lifecycle import Lifecycle
    from shared.generations.models import FinishReason
    from shared.queue import enqueue_generation, make_celery
    from shared.redisconn import sync_client
    from shared.settings import Settings
    from worker.engine import ChatMessage, fit_messages, load_engine
    from worker.generate import _history

    env = stack.env
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        data_dir=Path(env["DATA_DIR"]),
        _env_file=None,  # type: ignore[call-arg]
    )
    client = sync_client(settings)
    sessions = make_sessionmaker(engine_from_settings(settings))
    celery = make_celery(settings, "bench-hops")

    def enqueue(generation_id: str, request_id: str | None) -> None:
        enqueue_generation(celery, generation_id=generation_id, request_id=request_id)

    web = Lifecycle(settings=settings, sessions=sessions, redis=client, enqueue=enqueue)
    samples: dict[str, list[float]] = {
        k: [] for k in ("start", "send_task", "pickup_and_claim", "claim", "history", "prompt")
    }
    sent: list[float] = []

    def timed_enqueue(generation_id: str, request_id: str | None) -> None:
        began = time.perf_counter()
        enqueue(generation_id, request_id)
        sent.append(_since(began))

    web_timed = Lifecycle(settings=settings, sessions=sessions, redis=client, enqueue=timed_enqueue)
    for i in range(rounds + warmup):
        chat_id = uuid.UUID(stack.new_chat(f"Say hello to number {i}."))
        began = time.perf_counter()
        started = web_timed.start(
            owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id=None
        )
        start_ms, returned = _since(began), time.perf_counter()
        key, last = tokenbus.events_key(str(started.generation_id)), "0"
        seen: float | None = None
        while seen is None:
            for _, entries in _read(client, key, last):
                for entry_id, fields in entries:
                    last = entry_id
                    if fields[b"t"] == b"generation" and seen is None:
                        seen = time.perf_counter()
        _wait_done(client, key, last)
        if i >= warmup:
            samples["start"].append(start_ms)
            samples["send_task"].append(sent[-1])
            samples["pickup_and_claim"].append((seen - returned) * 1000)

    # The worker's own steps, alone: claim (no broker), history, prompt.
    engine = load_engine(settings)
    nobody = Lifecycle(
        settings=settings, sessions=sessions, redis=client, enqueue=lambda g, r: None
    )
    for i in range(rounds + warmup):
        chat_id = uuid.UUID(stack.new_chat(f"Say goodbye to number {i}."))
        started = nobody.start(
            owner=None, chat_id=chat_id, kind="chat", regenerate=False, request_id=None
        )
        began = time.perf_counter()
        generation = web.claim(started.generation_id, worker_id="bench:0", model="bench")
        claim_ms = _since(began)
        if generation is None:  # the worker's sweep got there first: skip the round
            continue
        began = time.perf_counter()
        with transaction(sessions) as session:
            history = _history(session, generation)
        history_ms = _since(began)
        messages = [ChatMessage("system", settings.system_prompt)] + [
            ChatMessage("user", m.message) for m in history or []
        ]
        began = time.perf_counter()
        fit_messages(engine, messages, max_new_tokens=settings.max_new_tokens)
        prompt_ms = _since(began)
        web.finish(generation, text="", sources=None, reason=FinishReason.STOP)
        if i >= warmup:
            samples["claim"].append(claim_ms)
            samples["history"].append(history_ms)
            samples["prompt"].append(prompt_ms)
    return {"rounds": rounds, "hops_ms_p50": {k: _p50(v) for k, v in samples.items()}}


def _read(client: Any, key: str, last: str) -> list[tuple[bytes, list[tuple[str, Any]]]]:
    """The stream's entries after ``last`` (waits up to 10 s for one)."""
    return list(client.xread({key: last}, block=10_000) or [])


def _wait_done(client: Any, key: str, last: str) -> None:
    from shared import tokenbus

    while True:
        for _, entries in _read(client, key, last):
            for entry_id, fields in entries:
                last = entry_id
                if fields[b"t"].decode() in tokenbus.TERMINAL:
                    return
