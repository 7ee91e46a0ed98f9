"""The engine alone, in a process of its own: the baseline the pipeline is compared with.

Loads the configured model as a worker would (same settings, same threads), then reads one
question per line on stdin and answers it greedily, writing one JSON line per answer:
``{"ttft_ms", "tokens", "tokens_per_s"}`` (time to the first text piece, and the decode
rate after it). The prompt is the worker's: the system prompt and the question. A line may
also be JSON, ``{"question": ..., "max_new_tokens": N}``, for a shorter answer.

Run: .venv/bin/python bench/engine_alone.py   (then type questions)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared.settings import get_settings
from worker.engine import ChatMessage, SamplingParams, load_engine


def main() -> None:
    settings = get_settings()
    engine = load_engine(settings)
    params = SamplingParams.from_settings(settings)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        question, overrides = line.strip(), {}
        if not question:
            continue
        if question.startswith("{"):
            asked = json.loads(question)
            question, overrides = asked["question"], {"max_new_tokens": asked["max_new_tokens"]}
        messages = [ChatMessage("system", settings.system_prompt), ChatMessage("user", question)]
        started = time.perf_counter()
        prompt = engine.render_prompt(messages)
        first = last = None
        with engine.stream(prompt, replace(params, **overrides)) as stream:
            for piece in stream:
                if piece:
                    last = time.perf_counter()
                    first = first or last
        tokens = stream.completion_tokens
        rate = None
        if first is not None and last is not None and tokens > 1 and last > first:
            rate = (tokens - 1) / (last - first)
        ttft = None if first is None else (first - started) * 1000
        print(json.dumps({"ttft_ms": ttft, "tokens": tokens, "tokens_per_s": rate}), flush=True)


if __name__ == "__main__":
    main()
