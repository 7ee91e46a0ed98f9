"""Several worker processes on one host (the threads budget at work, no THREADS setting).

For 1, 2 and 4 worker processes (started one after another into the same stack): a lone
answer's decode rate (one chat at a time, each against the engine alone asked just before
it: ``lone_vs_engine``; the stages' ratio of it is ``lone_vs_one``), and the aggregate
rate of as many concurrent chats as there are workers (completion tokens of all over the
wall time of the round; the median of ``rounds`` rounds). Beside it, the ceiling: the
engine alone in as many processes, one thread each, against one process with every core
(``engine_ceiling``).

Machine speed drifts within a run here (a shared 2-core VM: the engine alone measured 60
to 125 tok/s on different days, and 20% apart within minutes), so the ratios that decide
are paired: each round runs one answer alone, then as many at once as there are workers,
on the same host in the same minute, and the figure is the median of the rounds' ratios
(``paired_vs_one_answer``; the engine's ceiling likewise, ``paired_vs_one``).
``aggregate_vs_one`` (against the 1-worker stage, minutes earlier) is kept beside it.
A lone answer first waits until every worker has sampled the host's load since the answers
before it ended (``Stack.settle``): a worker would otherwise count the workers that just
finished as busy neighbours and start the lone answer on fewer threads, making the paired
ratio look better than it is.

So do the answers it is compared with (the concurrent round, the engine alone), so that
every measured answer starts on a host idle for the same second or two: this VM's cores
run at about half speed for the first ~0.25 s of work after an idle second (the engine
alone in one process, 200 tokens after 2.3 s idle: the first 16 tokens at 18 and 12
ms/token, then 4.9 as when warm), which costs a ~1 s answer ~10%. With only the lone
answer after the wait, the 1-worker stage's control (one answer, then one more) read 1.25
instead of 1.0, and the lone answers' ratio to the engine alone 0.88.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.pipeline import EngineAlone
from bench.stack import LONG_QUESTION, Stack, read_answer, running


async def _round(stack: Stack, chats: int) -> tuple[float, list[float], int]:
    """(aggregate tokens/s, each answer's client decode rate, failures) of ``chats`` at once."""
    chat_ids = [await asyncio.to_thread(stack.new_chat, LONG_QUESTION) for _ in range(chats)]
    started = time.perf_counter()
    answers = await asyncio.wait_for(
        asyncio.gather(*(read_answer(stack.base, c) for c in chat_ids)), timeout=300
    )
    seconds = time.perf_counter() - started
    tokens = sum(a.completion_tokens for a in answers)
    rates = [rate for a in answers if (rate := a.client_tokens_per_s())]
    failures = sum(1 for a in answers if a.done is None)
    return tokens / seconds, rates, failures


def run(
    *,
    counts: tuple[int, ...] = (1, 2, 4),
    lone: int = 9,
    rounds: int = 9,
    max_new_tokens: int = 200,
) -> Any:
    results: dict[str, Any] = {}
    with running(workers=0, MAX_NEW_TOKENS=str(max_new_tokens)) as stack:
        engine = EngineAlone({**stack.env, "THREADS": "0"})  # 0: every core
        try:
            engine.ask("Say hello.")  # warm: the first answer loads pages of the model
            for count in counts:
                stack.add_workers(count - len(stack.workers))
                results[str(count)] = _stage(stack, engine, count, lone=lone, rounds=rounds)
        finally:
            engine.close()
        ceiling = engine_ceiling(stack.env, counts, rounds=rounds)
    return {**relative(results), "engine_ceiling": ceiling}


def relative(results: dict[str, Any]) -> dict[str, Any]:
    """Each stage's figures against the 1-worker stage's, added to its entry."""
    one = results.get("1", {}).get("aggregate_tokens_per_s")
    paired = results.get("1", {}).get("lone_vs_engine")
    base = results.get("1", {}).get("lone_tokens_per_s")
    for entry in results.values():
        if one:
            entry["aggregate_vs_one"] = round(entry["aggregate_tokens_per_s"] / one, 3)
        # Paired: each stage's lone answers against the engine alone, asked just before
        # each of them; the stages' own rates, minutes apart, are kept beside it.
        if paired and entry["lone_vs_engine"]:
            entry["lone_vs_one"] = round(entry["lone_vs_engine"] / paired, 3)
        if base and entry["lone_tokens_per_s"]:
            entry["lone_vs_one_unpaired"] = round(entry["lone_tokens_per_s"] / base, 3)
    return results


def _stage(
    stack: Stack, engine: EngineAlone, count: int, *, lone: int, rounds: int
) -> dict[str, Any]:
    """One stage of ``count`` workers: lone answers (each against the engine alone asked
    just before it) and paired rounds of one answer, then ``count`` at once."""
    asyncio.run(_round(stack, count))  # warm: a worker's first answer loads the model
    lone_rates, lone_vs_engine = [], []
    for _ in range(lone):
        stack.settle()  # the engine alone starts on an idle host too (see the docstring)
        alone_engine = engine.ask(LONG_QUESTION)["tokens_per_s"]
        stack.settle()
        _, rates, _ = asyncio.run(_round(stack, 1))
        lone_rates.extend(rates)
        if rates and alone_engine:
            lone_vs_engine.append(rates[0] / alone_engine)
    aggregates, ratios, failures = [], [], 0
    for _ in range(rounds):
        stack.settle()
        alone, _, failed_alone = asyncio.run(_round(stack, 1))
        stack.settle()
        aggregate, _, failed = asyncio.run(_round(stack, count))
        aggregates.append(aggregate)
        ratios.append(aggregate / alone if alone else 0.0)
        failures += failed + failed_alone
    return {
        "lone_tokens_per_s": round(statistics.median(lone_rates), 1) if lone_rates else None,
        "lone_vs_engine": round(statistics.median(lone_vs_engine), 3) if lone_vs_engine else None,
        "aggregate_tokens_per_s": round(statistics.median(aggregates), 1),
        "paired_vs_one_answer": round(statistics.median(ratios), 3),
        "failed": failures,
    }


def engine_ceiling(env: dict[str, str], counts: tuple[int, ...], *, rounds: int) -> Any:
    """The engine alone (``bench/engine_alone.py``), the same long question: ``count``
    processes with one thread each against one process with every core (aggregate tokens/s
    over the wall time, median of ``rounds``): what the workers' ratios can reach here."""
    rates: dict[str, float] = {}
    paired: dict[str, float] = {}
    alone = EngineAlone({**env, "THREADS": "0"})  # 0: every core
    try:
        alone.ask("Say hello.")  # warm: the first answer loads pages of the model
        for count in counts:
            samples, ratios = [], []
            processes = [EngineAlone({**env, "THREADS": "1"}) for _ in range(count)]
            try:
                for process in processes:
                    process.ask("Say hello.")
                for _ in range(rounds):
                    one = _engine_rate([alone])
                    rate = one if count == 1 else _engine_rate(processes)
                    samples.append(rate)
                    ratios.append(rate / one)
            finally:
                for process in processes:
                    process.close()
            rates[str(count)] = round(statistics.median(samples), 1)
            paired[str(count)] = round(statistics.median(ratios), 3)
    finally:
        alone.close()
    first = rates.get("1")
    return {
        "tokens_per_s": rates,
        "vs_one": {k: round(v / first, 3) for k, v in rates.items()} if first else {},
        "paired_vs_one": paired,
    }


def _engine_rate(processes: list[EngineAlone]) -> float:
    """Aggregate tokens/s of the long question asked of every process at once."""
    started = time.perf_counter()
    for process in processes:
        process.send(LONG_QUESTION)
    answers = [process.receive() for process in processes]
    tokens: int = sum(a["tokens"] for a in answers)
    return tokens / (time.perf_counter() - started)
