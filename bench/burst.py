"""A burst: many concurrent chats against one worker, short answers.

Every chat is created first, then all streams open at once. Counts how each ended (done,
or the error code), ``queue`` events seen, queue wait (``done`` timings: created ->
started) p50/p95, the web process's peak RSS, and the wall time. It measures whatever
the code does today: with a queue timeout shorter than the burst needs, chats fail.
With ``MAX_QUEUED`` set (``env``), also how many were turned away with 429 (and whether
each said when to retry) and whether every admitted chat finished.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import httpx
import psutil

from bench.stack import Answer, Stack, percentile, running, stream_answer


def run(*, chats: int = 200, max_new_tokens: int = 32, **env: str) -> dict[str, Any]:
    with running(workers=1, MAX_NEW_TOKENS=str(max_new_tokens), **env) as stack:
        assert stack.web is not None
        web = psutil.Process(stack.web.pid)
        peak = [web.memory_info().rss]
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.1):
                peak[0] = max(peak[0], web.memory_info().rss)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            started = time.perf_counter()
            answers = asyncio.run(_burst(stack, chats))
            seconds = time.perf_counter() - started
        finally:
            stop.set()
            watcher.join()
    outcomes = Counter("done" if a.done else (a.error or {}).get("code", "no_end") for a in answers)
    waits = [a.done["timings"]["queue_ms"] / 1000 for a in answers if a.done]
    p50, p95 = percentile(waits, 0.5), percentile(waits, 0.95)
    rejected = [a for a in answers if a.status == 429]
    return {
        "chats": chats,
        "env": env,
        "done": outcomes.get("done", 0),
        "rejected_429": len(rejected),
        "rejected_with_retry_after": sum(1 for a in rejected if a.retry_after),
        "admitted": chats - len(rejected),
        "admitted_done": sum(1 for a in answers if a.status != 429 and a.done),
        "outcomes": dict(outcomes),
        "queue_events": sum(a.events.get("queue", 0) for a in answers),
        "queue_wait_s_p50": None if p50 is None else round(p50, 2),
        "queue_wait_s_p95": None if p95 is None else round(p95, 2),
        "web_rss_mb_peak": round(peak[0] / 2**20, 1),
        "seconds": round(seconds, 1),
    }


async def _burst(stack: Stack, chats: int) -> list[Answer]:
    chat_ids = [await asyncio.to_thread(stack.new_chat) for _ in range(chats)]
    limits = httpx.Limits(max_connections=chats + 10)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        return list(
            await asyncio.gather(*(_safe(client, stack.base, chat_id) for chat_id in chat_ids))
        )


async def _safe(client: httpx.AsyncClient, base: str, chat_id: str) -> Answer:
    try:
        return await stream_answer(client, base, chat_id)
    except httpx.HTTPError as exc:
        return Answer(sent=time.perf_counter(), error={"code": type(exc).__name__})
