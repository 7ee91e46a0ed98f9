"""Several worker processes on one host (the threads budget at work, no THREADS setting).

For 1, 2 and 4 worker processes (started one after another into the same stack): a lone
answer's decode rate (one chat at a time), and the aggregate rate of as many concurrent
chats as there are workers (completion tokens of all over the wall time of the round).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

from bench.stack import LONG_QUESTION, Stack, running, stream_answer


async def _round(stack: Stack, chats: int) -> tuple[float, list[float], int]:
    """(aggregate tokens/s, each answer's client decode rate, failures) of ``chats`` at once."""
    chat_ids = [await asyncio.to_thread(stack.new_chat, LONG_QUESTION) for _ in range(chats)]
    async with httpx.AsyncClient(timeout=300) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(*(stream_answer(client, stack.base, c) for c in chat_ids))
        seconds = time.perf_counter() - started
    tokens = sum(a.completion_tokens for a in answers)
    rates = [rate for a in answers if (rate := a.client_tokens_per_s())]
    failures = sum(1 for a in answers if a.done is None)
    return tokens / seconds, rates, failures


def run(*, counts: tuple[int, ...] = (1, 2, 4), lone: int = 3, max_new_tokens: int = 200) -> Any:
    results: dict[str, Any] = {}
    with running(workers=0, MAX_NEW_TOKENS=str(max_new_tokens)) as stack:
        for count in counts:
            stack.add_workers(count - len(stack.workers))
            lone_rates = []
            for _ in range(lone):
                _, rates, _ = asyncio.run(_round(stack, 1))
                lone_rates.extend(rates)
            aggregate, _, failures = asyncio.run(_round(stack, count))
            results[str(count)] = {
                "lone_tokens_per_s": round(statistics.median(lone_rates), 1)
                if lone_rates
                else None,
                "aggregate_tokens_per_s": round(aggregate, 1),
                "failed": failures,
            }
    one = results.get("1", {}).get("aggregate_tokens_per_s")
    for entry in results.values():
        if one:
            entry["aggregate_vs_one"] = round(entry["aggregate_tokens_per_s"] / one, 3)
        base = results.get("1", {}).get("lone_tokens_per_s")
        if base and entry["lone_tokens_per_s"]:
            entry["lone_vs_one"] = round(entry["lone_tokens_per_s"] / base, 3)
    return results
