"""Pipeline cost: the same questions through web -> Celery -> Redis -> SSE and on the engine
alone (its own process), in alternation, so both see the same machine load. Long answers
give the decode rates; many short ones (a stack of their own) the added time to first
token, whose median needs many rounds on a shared machine.

Each round asks one question both ways, back to back, which goes first alternating from
round to round (an order effect cancels). The decode ratio is the median of the rounds'
own ratios (paired, like the workers part): this machine's speed drifts by tens of
percent within minutes, which a ratio of two medians taken over many minutes carries
into the figure; that ratio is kept beside it (``decode_ratio_of_medians``). A pipeline
answer right after the engine alone's waits until the worker has sampled the host's load
since (``Stack.settle``): else the worker can take the engine alone's process for a busy
neighbour and start on fewer threads (2 of 8 such rounds did, in a trial).

Each measured answer follows a short one of its own side (``WARM_UP_TOKENS``, to the same
``warm_up_question`` on both), so both start warm. Without it the pipeline answered after
the settle's idle seconds in every other round and the engine alone never did, and this
VM's cores run at about half speed for the first ~0.25 s of work after an idle second
(first token: 14.5 ms added in the rounds after the wait, 8.8 ms in the others, one run
of 30 rounds; with 8-token warm-ups 12.4 and 10.9 ms).

Also breaks the added time to first token into hops, from the client's clock and the
``done`` event's timings (one host, one clock):
- ``web``: request sent -> response headers (validation, the generation row, enqueue);
- ``queue``: generation created -> a worker started it (broker pickup, claim);
- ``worker_to_first_token``: started -> first token, less the engine's own time to first
  token (ownership, history, prompt);
- ``delivery``: the rest (token bus, SSE to the client);
and times ``send_task`` alone, which the web runs on its event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

if __name__ == "__main__":  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import ROOT, Answer, Stack, percentile, read_answer, running

COUNTRIES = [
    "France",
    "Spain",
    "Italy",
    "Germany",
    "Japan",
    "Canada",
    "Brazil",
    "Kenya",
    "Norway",
    "Chile",
    "Egypt",
    "India",
]


def question(i: int) -> str:
    # A new question each round, so neither side replays a cached prompt.
    return f"Tell me about {COUNTRIES[i % len(COUNTRIES)]}: its capital, history and food."


#: Tokens of the short answer each side gives just before a measured one: enough for this
#: VM's cores to be at full speed again after an idle second (the first ~0.25 s of work
#: after one runs at about half speed; ``bench/workers.py``).
WARM_UP_TOKENS = 48


def warm_up_question(text: str) -> str:
    """What each side answers (briefly) just before ``text``: the same for both sides, so
    their engines hold the same previous prompt; unlike ``text``, so that prompt is not
    replayed from cache."""
    return f"In one sentence, before this: {text}"


class EngineAlone:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "engine_alone.py")],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._read()  # ready

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("bench: the engine-alone process died")
        return dict(json.loads(line))

    def send(self, text: str, max_new_tokens: int | None = None) -> None:
        """Ask without waiting for the answer (``receive`` reads it)."""
        assert self.process.stdin is not None
        line = text
        if max_new_tokens is not None:
            line = json.dumps({"question": text, "max_new_tokens": max_new_tokens})
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        return self._read()

    def ask(self, text: str, max_new_tokens: int | None = None) -> dict[str, Any]:
        self.send(text, max_new_tokens)
        return self.receive()

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        if self.process.stdout:
            self.process.stdout.close()


def time_send_task(stack: Stack, count: int = 50) -> float:
    """Median ms of one ``send_task`` (what the web does per answer) on this Redis."""
    from shared.queue import make_celery
    from shared.settings import Settings

    settings = Settings(redis_url=stack.env["REDIS_URL"], _env_file=None)  # type: ignore[call-arg]
    app = make_celery(settings, "bench")
    queue = "bench-send-task"
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        app.send_task("bench.noop", args=["x"], queue=queue, expires=30)
        samples.append((time.perf_counter() - started) * 1000)
    stack.redis.delete(queue)
    return statistics.median(samples[5:])


def run(
    *,
    rounds: int = 12,
    max_new_tokens: int = 200,
    first_token_rounds: int = 0,
    first_token_tokens: int = WARM_UP_TOKENS,
) -> dict[str, Any]:
    """``rounds`` long answers for the decode rates; the time to first token from
    ``first_token_rounds`` short answers (a stack of their own) when given, else from the
    long ones. On a shared machine the engine's own first token varies by tens of ms from
    one prompt to the next (the same prompts alone: 126-189 ms on 2 cores), so the added
    time, a difference of two such figures, needs many rounds for a steady median; short
    answers make those rounds cheap."""
    pairs, send_task_ms = _pairs(rounds, max_new_tokens)
    result = summarize(pairs, send_task_ms)
    if first_token_rounds:
        short, _ = _pairs(first_token_rounds, first_token_tokens)
        first = summarize(short, send_task_ms)
        result["long_answers_added_ttft_ms_p50"] = result["added_ttft_ms_p50"]
        for key in ("engine_ttft_ms_p50", "added_ttft_ms_p50", "added_ttft_ms_p95", "hops_ms_p50"):
            result[key] = first[key]
        result["first_token_rounds"] = first["valid"]
        result["first_token_tokens"] = first_token_tokens
    return result


def _pairs(rounds: int, max_new_tokens: int) -> tuple[list[tuple[dict[str, Any], Answer]], float]:
    """(engine alone, pipeline) answers to the same questions, back to back (which goes
    first alternating), on a stack of their own; and the median ms of one ``send_task``
    there. Each pipeline answer also records the CPU the web process and Redis spent while
    it streamed (``cpu_ms``)."""
    pairs: list[tuple[dict[str, Any], Answer]] = []
    with running(workers=1, MAX_NEW_TOKENS=str(max_new_tokens)) as stack:
        engine = EngineAlone(stack.env)
        assert stack.web is not None
        web = psutil.Process(stack.web.pid)
        try:
            engine.ask(question(99))  # warm both: first answers load pages of the model
            asyncio.run(_one(stack, question(98)))

            def through_pipeline(text: str) -> Answer:
                before = _cpu_s(web, stack)
                piped = asyncio.run(_one(stack, text))
                piped.cpu_ms = {
                    name: (after - before[name]) * 1000
                    for name, after in _cpu_s(web, stack).items()
                }
                return piped

            # The server caps a request's tokens at its MAX_NEW_TOKENS: the same on both sides.
            warm = min(WARM_UP_TOKENS, max_new_tokens)
            for i in range(rounds):
                pairs.append(paired_round(i, engine, stack, through_pipeline, warm_up_tokens=warm))
        finally:
            engine.close()
        return pairs, time_send_task(stack)


def paired_round(
    i: int,
    engine: EngineAlone,
    stack: Stack,
    through_pipeline: Callable[[str], Answer],
    *,
    warm_up_tokens: int = WARM_UP_TOKENS,
) -> tuple[dict[str, Any], Answer]:
    """Round ``i``: ``question(i)`` asked of the engine alone and through the pipeline, back
    to back, the pipeline first in odd rounds; each side first answers the same short
    warm-up question (``warm_up_tokens`` long), and a pipeline that follows the engine
    alone waits for the worker's next host-load sample (``Stack.settle``) before its
    warm-up."""
    text, warm_up = question(i), warm_up_question(question(i))

    def alone() -> dict[str, Any]:
        engine.ask(warm_up, warm_up_tokens)
        return engine.ask(text)

    def piped() -> Answer:
        stack.warm_up(warm_up, warm_up_tokens)
        return through_pipeline(text)

    if i % 2:
        answer = piped()
        return alone(), answer
    answered = alone()
    stack.settle()  # else the worker counts the engine alone as busy
    return answered, piped()


def _cpu_s(web: psutil.Process, stack: Stack) -> dict[str, float]:
    """CPU seconds so far of the web process and of Redis (its own count: ``INFO cpu``)."""
    times = web.cpu_times()
    info = stack.redis.info("cpu")
    return {
        "web": times.user + times.system,
        "redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
    }


async def _one(stack: Stack, text: str) -> Answer:
    chat_id = await asyncio.to_thread(stack.new_chat, text)
    return await asyncio.wait_for(read_answer(stack.base, chat_id), timeout=120)


def summarize(pairs: list[tuple[dict[str, Any], Answer]], send_task_ms: float) -> dict[str, Any]:
    engine_rates, pipe_rates, ratios, added, hops = [], [], [], [], []
    for alone, piped in pairs:
        if piped.done is None or piped.first_token is None or alone["ttft_ms"] is None:
            continue
        client_ttft = (piped.first_token - piped.sent) * 1000
        added.append(client_ttft - alone["ttft_ms"])
        if alone["tokens_per_s"] and (rate := piped.client_tokens_per_s()):
            engine_rates.append(alone["tokens_per_s"])
            pipe_rates.append(rate)
            ratios.append(rate / alone["tokens_per_s"])
        timings = piped.done["timings"]
        web = ((piped.headers or piped.sent) - piped.sent) * 1000
        queue = timings["queue_ms"] or 0.0
        worker = (timings["ttft_ms"] or 0.0) - alone["ttft_ms"]
        hops.append(
            {
                "web": web,
                "queue": queue,
                "worker_to_first_token": worker,
                "delivery": client_ttft - alone["ttft_ms"] - web - queue - worker,
            }
        )
    costs = [piped.cpu_ms for _, piped in pairs if piped.done is not None and piped.cpu_ms]
    engine_rate = statistics.median(engine_rates) if engine_rates else None
    pipe_rate = statistics.median(pipe_rates) if pipe_rates else None
    return {
        "rounds": len(pairs),
        "valid": len(added),
        "engine_tokens_per_s_p50": _round(engine_rate),
        "pipeline_tokens_per_s_p50": _round(pipe_rate),
        "decode_ratio": _round(statistics.median(ratios), 3) if ratios else None,
        "decode_ratio_of_medians": _round(pipe_rate / engine_rate, 3)
        if engine_rate and pipe_rate
        else None,
        "engine_ttft_ms_p50": _round(statistics.median(a["ttft_ms"] for a, _ in pairs)),
        "added_ttft_ms_p50": _round(percentile(added, 0.5)),
        "added_ttft_ms_p95": _round(percentile(added, 0.95)),
        "hops_ms_p50": {name: _round(statistics.median(h[name] for h in hops)) for name in hops[0]}
        if hops
        else {},
        "send_task_ms_p50": _round(send_task_ms, 2),
        # What relaying one answer costs beside the engine on the same cores (the decode
        # ratio's loss on 2 cores): the web's and Redis's CPU while it streamed, and the
        # token events it took.
        "cpu_ms_per_answer_p50": {
            name: _round(statistics.median(c[name] for c in costs)) for name in costs[0]
        }
        if costs
        else {},
        "token_events_per_answer_p50": _round(
            statistics.median(piped.events.get("token", 0) for _, piped in pairs)
        ),
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def with_steps(
    *, rounds: int, max_new_tokens: int, step_rounds: int, first_token_rounds: int = 0
) -> dict[str, Any]:
    """``run``, with each step before the first token timed alone (``bench/hops.py``)."""
    from bench import hops

    result = run(
        rounds=rounds, max_new_tokens=max_new_tokens, first_token_rounds=first_token_rounds
    )
    result["steps_ms_p50"] = hops.run(rounds=step_rounds)["hops_ms_p50"]
    return result


def main(argv: list[str] | None = None) -> int:
    """``python bench/pipeline.py [--rounds N] [--tokens N] [--out FILE]``: this part alone
    (with ``bench/hops.py``'s steps), e.g. on a GPU machine with ``GPU_LAYERS=100``; its
    ``--out`` file is what ``bench/run.py --gpu-pipeline`` records."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--first-token-rounds", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = with_steps(
        rounds=args.rounds,
        max_new_tokens=args.tokens,
        step_rounds=10,
        first_token_rounds=args.first_token_rounds,
    )
    result["gpu_layers"] = int(os.environ.get("GPU_LAYERS") or 0)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
