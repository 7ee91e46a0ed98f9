"""Benchmark: API throughput and what the pipeline adds to time to first token.

Starts a real web server and a real worker (SQLite in a temp folder, Redis db 11), then
1. serves GET /chats/{id} as fast as 32 concurrent clients can ask, beside a bare Starlette
   JSON endpoint in the same process kind (ratio = ours / bare);
2. streams N short answers and reports, from each `done` event and the client's clock:
   queue_ms (enqueue -> worker start), ttft_ms (worker start -> first token, model time),
   client_ttft_ms (request sent -> first token event) and tokens/s.

Run: .venv/bin/python bench/stream_latency.py [--answers 10] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared.cli import web_command, worker_command

ROOT = Path(__file__).resolve().parent.parent
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def one(request):
    return JSONResponse({"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": "Chat 1",
                         "created_at": "2023-08-05T14:48:00.000Z",
                         "updated_at": "2023-08-05T14:48:00.000Z"})
app = Starlette(routes=[Route("/chats/{id}", one)])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} never answered")


async def hammer(url: str, total: int, concurrency: int = 32) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        counter = iter(range(total))

        async def one_client() -> None:
            for _ in counter:
                response = await client.get(url)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


def stream_once(base: str, chat_id: str) -> dict[str, float]:
    sent = time.perf_counter()
    first = None
    done = None
    with (
        httpx.Client(timeout=60) as client,
        client.stream("GET", f"{base}/conversations/inference/{chat_id}") as response,
    ):
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event is None and first is None:
                    first = time.perf_counter()
                if event == "done":
                    done = json.loads(line[6:])
            elif line == "":
                event = None
    assert done is not None and first is not None
    timings = done["timings"]
    return {
        "queue_ms": timings["queue_ms"],
        "ttft_ms": timings["ttft_ms"],
        "client_ttft_ms": (first - sent) * 1000,
        "tokens_per_s": timings["tokens_per_s"] or 0.0,
    }


def start_stack(
    folder: Path, *, port: int, max_new_tokens: int
) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A migrated SQLite database in ``folder``, a web server and one ready worker."""
    env = {
        **os.environ,
        "DATA_DIR": str(ROOT / ".pytest-data"),
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "REDIS_URL": "redis://127.0.0.1:6379/11",
        "TEMPERATURE": "0",
        "MAX_NEW_TOKENS": str(max_new_tokens),
        "LOG_LEVEL": "WARNING",
    }
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    python = sys.executable
    for step in (["models", "pull", "--quiet"], ["migrate"]):
        subprocess.run([python, "-m", "shared.cli", *step], env=env, cwd=ROOT, check=True)
    processes = [
        subprocess.Popen(
            web_command(host="127.0.0.1", port=port, log_level="warning"), env=env, cwd=ROOT
        ),
        subprocess.Popen(worker_command(name="bench@%h", log_level="WARNING"), env=env, cwd=ROOT),
    ]
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz")
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            stop_stack(processes)
            raise SystemExit("worker never became ready")
        time.sleep(0.3)
    return base, processes


def stop_stack(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="chatbot-bench-"))
    (folder / "bare.py").write_text(BARE_APP)
    bare_port = free_port()
    bare_command = [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(bare_port)]
    bare = subprocess.Popen(
        [*bare_command, "--no-access-log", "--log-level", "warning"], cwd=folder
    )
    base, processes = start_stack(folder, port=free_port(), max_new_tokens=32)
    processes.append(bare)
    try:
        wait_http(f"http://127.0.0.1:{bare_port}/chats/x")
        chat = httpx.post(f"{base}/chats/create", json={"name": "bench"}).json()
        ours = asyncio.run(hammer(f"{base}/chats/{chat['id']}", args.requests))
        bare_rps = asyncio.run(hammer(f"http://127.0.0.1:{bare_port}/chats/x", args.requests))
        samples = []
        for i in range(args.answers):
            chat_id = httpx.post(f"{base}/chats/create", json={"name": f"b{i}"}).json()["id"]
            httpx.post(
                f"{base}/conversations/create",
                json={
                    "chat_id": chat_id,
                    "role": "Human",
                    "message": "What is the capital of France?",
                },
            )
            samples.append(stream_once(base, chat_id))
    finally:
        stop_stack(processes)

    def p50(key: str) -> float:
        return statistics.median(s[key] for s in samples)

    report = {
        "get_chat_rps": round(ours, 1),
        "bare_starlette_rps": round(bare_rps, 1),
        "ratio": round(ours / bare_rps, 3),
        "answers": len(samples),
        "queue_ms_p50": round(p50("queue_ms"), 1),
        "worker_ttft_ms_p50": round(p50("ttft_ms"), 1),
        "client_ttft_ms_p50": round(p50("client_ttft_ms"), 1),
        "pipeline_overhead_ms_p50": round(p50("client_ttft_ms") - p50("ttft_ms"), 1),
        "tokens_per_s_p50": round(p50("tokens_per_s"), 1),
    }
    for key, value in report.items():
        print(f"{key:28} {value}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "stream_latency.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
