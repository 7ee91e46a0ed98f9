"""Benchmark: time to first token of internet answers, against a local fake SerpApi and
local result pages (the retrieval benchmark's questions and pages).

Starts a real web server and a real worker (SQLite in a temp folder, a leased Redis
database, the default model), then asks N questions that were never searched before
(nothing cached) through ``/conversations/inference_internet`` and reads each stream:

- ``first_token_s``: request sent -> first token event (the lead when it is on);
- ``first_model_token_s``: request sent -> first token the model itself wrote;
- ``worker_ttft_s``: the ``done`` event's worker-side ttft (worker start -> first token);
- the prompt's size in tokens.

Run: ``.venv/bin/python bench/internet_ttft.py [--answers 8] [--lead auto|on|off]``; the
figures are printed and written to ``bench/results/internet_ttft.json``.
:func:`measure` returns them for other scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.retrieval.data import QuestionSet, load_sets  # noqa: E402
from bench.stream_latency import free_port, stop_stack, wait_http  # noqa: E402
from shared.cli import web_command, worker_command  # noqa: E402
from tests.redis_lease import lease_redis_db  # noqa: E402
from tests.worker.internet.internet_fakes import (  # noqa: E402
    TEST_API_KEY,
    FakeSerpApi,
    LocalServer,
    SeenRequest,
)

_LEAD_END = re.compile(r"\[\d+\]\.$")  # a lead ends with its citation: "... [1]."
TARGET_FIRST_TOKEN_S = 2.5
"""The goal: an internet answer's first token within this, p50, against local fakes."""


class Serp(FakeSerpApi):
    """Lists each question's pages (served by ``web``) for a search of that question."""

    def __init__(self, web: LocalServer, sets: list[QuestionSet]) -> None:
        super().__init__()
        self.by_question: dict[str, list[dict[str, Any]]] = {}
        for number, qs in enumerate(sets):
            results = []
            for position, page in enumerate(qs.pages, start=1):
                url = web.page(f"/{number}/{position}", page.html)
                results.append(
                    {
                        "position": position,
                        "title": page.title,
                        "link": url,
                        "snippet": page.snippet,
                    }
                )
            self.by_question[" ".join(qs.question.split())] = results

    def _answer(self, seen: SeenRequest) -> Any:
        question = seen.query.get("q", [""])[0]
        return self.json({"organic_results": self.by_question.get(question, [])})


def read_stream(base: str, chat_id: str) -> dict[str, Any]:
    """Stream one internet answer; the client-side times and the ``done`` payload."""
    sent = time.perf_counter()
    tokens: list[float] = []
    first_text = ""
    done: dict[str, Any] | None = None
    sources: dict[str, Any] | None = None
    url = f"{base}/conversations/inference_internet/{chat_id}"
    with httpx.Client(timeout=120) as client, client.stream("GET", url) as response:
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event is None:
                    tokens.append(time.perf_counter() - sent)
                    if len(tokens) == 1:
                        first_text = line[6:]
                elif event == "done":
                    done = json.loads(line[6:])
                elif event == "sources":
                    sources = json.loads(line[6:])
            elif line == "":
                event = None
    if done is None or not tokens:
        raise RuntimeError(f"the stream of chat {chat_id} ended without tokens or done")
    quoted = bool(sources and any(item.get("quote") for item in sources["sources"]))
    led = bool(_LEAD_END.search(first_text)) and len(tokens) > 1
    return {"tokens": tokens, "done": done, "quoted": quoted, "lead": led}


def measure(*, answers: int = 8, lead: str = "auto", max_new_tokens: int = 32) -> dict[str, Any]:
    """Start a stack, ask ``answers`` new questions (after one warm-up), return figures."""
    sets = load_sets(ROOT / "bench" / "retrieval" / "questions")[: answers + 1]
    web = LocalServer()
    serp = Serp(web, sets)
    folder = Path(tempfile.mkdtemp(prefix="chatbot-internet-ttft-"))
    env = {
        **os.environ,
        "DATA_DIR": str(ROOT / ".pytest-data"),
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "REDIS_URL": lease_redis_db(),
        "TEMPERATURE": "0",
        "MAX_NEW_TOKENS": str(max_new_tokens),
        "LOG_LEVEL": "WARNING",
        "SERPAPI_API_KEY": TEST_API_KEY,
        "SERPAPI_BASE_URL": serp.url(""),
        "FETCH_ALLOW_PRIVATE": "true",
        "EVIDENCE_LEAD": lead,
    }
    python = sys.executable
    for step in (["models", "pull", "--quiet"], ["migrate"]):
        subprocess.run([python, "-m", "shared.cli", *step], env=env, cwd=ROOT, check=True)
    port = free_port()
    processes = [
        subprocess.Popen(
            web_command(host="127.0.0.1", port=port, log_level="warning"), env=env, cwd=ROOT
        ),
        subprocess.Popen(worker_command(name="ttft@%h", log_level="WARNING"), env=env, cwd=ROOT),
    ]
    base = f"http://127.0.0.1:{port}"
    samples: list[dict[str, Any]] = []
    try:
        wait_http(f"{base}/healthz")
        deadline = time.monotonic() + 120
        while httpx.get(f"{base}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker never became ready")
            time.sleep(0.3)
        for number, qs in enumerate(sets):
            chat_id = httpx.post(f"{base}/chats/create", json={"name": f"t{number}"}).json()["id"]
            httpx.post(
                f"{base}/conversations/create",
                json={"chat_id": chat_id, "role": "Human", "message": qs.question},
            ).raise_for_status()
            got = read_stream(base, chat_id)
            if number > 0:  # the first answer warms the worker up
                samples.append(got)
    finally:
        stop_stack(processes)
        serp.close()
        web.close()

    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    first = [s["tokens"][0] for s in samples]
    model_first = [s["tokens"][1] if s["lead"] else s["tokens"][0] for s in samples]
    worker = [s["done"]["timings"]["ttft_ms"] / 1000 for s in samples]
    prompt_tokens = [s["done"]["usage"]["prompt_tokens"] for s in samples]
    p50 = round(statistics.median(first), 3)
    return {
        "answers": len(samples),
        "evidence_lead": lead,
        "first_token_s_p50": p50,
        "first_token_s_p95": p(first, 0.95),
        "first_model_token_s_p50": round(statistics.median(model_first), 3),
        "first_model_token_s_p95": p(model_first, 0.95),
        "worker_ttft_s_p50": round(statistics.median(worker), 3),
        "prompt_tokens_p50": statistics.median(prompt_tokens),
        "answers_with_lead": sum(s["lead"] for s in samples),
        "sources_quoted": sum(s["quoted"] for s in samples),
        "target_first_token_s": TARGET_FIRST_TOKEN_S,
        "met": p50 <= TARGET_FIRST_TOKEN_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=8)
    parser.add_argument("--lead", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    figures = measure(answers=args.answers, lead=args.lead, max_new_tokens=args.max_new_tokens)
    for key, value in figures.items():
        print(f"{key:28} {value}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "internet_ttft.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
