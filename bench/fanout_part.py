"""Fan-out for ``bench/run.py``: many clients on one answer, one web process
(``bench/fanout.py`` does the streaming); adds the web's RSS and SSE events/s."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.fanout import run as fan_out
from bench.stack import running


def _events_sent(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chatbot_sse_events_total"
    )


def run(*, clients: int = 300, max_new_tokens: int = 64) -> dict[str, Any]:
    with running(workers=1, MAX_NEW_TOKENS=str(max_new_tokens)) as stack:
        assert stack.web is not None
        chat_id = stack.new_chat("Tell me about the sea.")
        before = _events_sent(stack.base)
        report = asyncio.run(fan_out(stack.base, chat_id, clients, stack.web.pid))
        events = _events_sent(stack.base) - before
        report["web_rss_mb"] = round(psutil.Process(stack.web.pid).memory_info().rss / 2**20, 1)
    seconds = float(str(report["seconds"]))
    report["sse_events_per_s"] = round(events / seconds, 1) if seconds else None
    report.pop("variants", None) if report.get("identical_text") else None
    return report
