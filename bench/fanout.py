"""Benchmark: many SSE clients on one answer share one web process's Redis connections.

Starts a web server and a worker (SQLite, Redis db 11), opens N concurrent clients on the
same chat's stream, and reports how many Redis connections the web process held at the
peak, whether every client got the identical text, and the wall time.

Run: .venv/bin/python bench/fanout.py [--clients 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.stream_latency import free_port, start_stack, stop_stack  # noqa: E402


async def one_client(base: str, chat_id: str) -> str:
    text: list[str] = []
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("GET", f"{base}/conversations/inference/{chat_id}") as response,
    ):
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event is None:
                text.append(line[6:])
            elif line == "":
                event = None
    return "".join(text)


def web_connections(client: redis.Redis, web_pid: int) -> int:
    # Every redis-py connection of the web process names itself in CLIENT LIST by its port;
    # count connections whose peer port belongs to the web process's sockets.
    ports = set()
    for fd in Path(f"/proc/{web_pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:"):
            ports.add(target[8:-1])
    inodes = ports
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if fields[9] in inodes and remote_port == 6379:
                count += 1
    return count


async def run(base: str, chat_id: str, clients: int, web_pid: int) -> dict[str, object]:
    probe = redis.Redis()
    peak = 0
    tasks = [asyncio.create_task(one_client(base, chat_id)) for _ in range(clients)]
    started = time.perf_counter()
    while not all(task.done() for task in tasks):
        peak = max(peak, web_connections(probe, web_pid))
        await asyncio.sleep(0.05)
    texts = [task.result() for task in tasks]
    variants = sorted({t: texts.count(t) for t in texts}.items(), key=lambda kv: -kv[1])
    return {
        "clients": clients,
        "identical_text": len(variants) == 1 and bool(texts[0]),
        "variants": [(count, text[:60]) for text, count in variants[:5]],
        "web_redis_connections_peak": peak,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="chatbot-fanout-"))
    base, processes = start_stack(folder, port=free_port(), max_new_tokens=64)
    try:
        chat_id = httpx.post(f"{base}/chats/create", json={"name": "fanout"}).json()["id"]
        httpx.post(
            f"{base}/conversations/create",
            json={"chat_id": chat_id, "role": "Human", "message": "Tell me about the sea."},
        )
        report = asyncio.run(run(base, chat_id, args.clients, processes[0].pid))
    finally:
        stop_stack(processes)
    for key, value in report.items():
        print(f"{key:28} {value}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "fanout.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
