"""Streaming answers end to end: real uvicorn, real Celery worker, real Redis and model."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import httpx
import psutil
import pytest
from httpx_sse import aconnect_sse

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.sse import Received, stream

pytestmark = pytest.mark.e2e

ID = re.compile(r"^[0-9a-f-]{36}:\d+-\d+$")
STORY = "Write a very long, detailed story about a lighthouse keeper and the sea."


def new_chat(base: str, *messages: tuple[str, str]) -> str:
    chat_id = httpx.post(f"{base}/chats/create", json={"name": "e2e"}).json()["id"]
    for role, text in messages:
        response = httpx.post(
            f"{base}/conversations/create", json={"chat_id": chat_id, "role": role, "message": text}
        )
        assert response.status_code == 201, response.text
    return str(chat_id)


def messages(base: str, chat_id: str) -> list[dict[str, object]]:
    return httpx.get(f"{base}/chats/{chat_id}/conversations").json()  # type: ignore[no-any-return]


def test_stream_ends_with_done_and_saves_exact_text(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", "What is the capital of France?"))
    got = stream(base, f"/conversations/inference/{chat_id}")
    assert got.status == 200
    assert all(ID.match(e.id) for e in got.events)
    assert len({e.id for e in got.events}) == len(got.events)
    assert [e.event for e in got.events[:2]] == ["queue", "generation"]
    assert got.events[-1].event == "done"
    assert len(got.tokens) > 1
    assert "Paris" in got.text
    done = got.done
    assert done is not None and done["status"] == "done"
    assert done["message"]["message"] == got.text
    assert done["usage"]["completion_tokens"] >= len(got.tokens)
    assert done["timings"]["ttft_ms"] is not None
    saved = messages(base, chat_id)
    assert [m["role"] for m in saved] == ["Human", "Assistant"]
    assert saved[-1]["message"] == got.text
    assert saved[-1]["status"] == "done"
    assert saved[-1]["generation_id"] == got.generation_id


def test_answered_chat_is_409_and_finished_stream_is_204(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", "Say hello."))
    first = stream(base, f"/conversations/inference/{chat_id}")
    again = stream(base, f"/conversations/inference/{chat_id}")
    assert again.status == 409
    assert again.body["error"]["code"] == "conflict"
    # EventSource reconnects with the last id it saw: 204 tells it the stream is over.
    resumed = stream(base, f"/conversations/inference/{chat_id}", last_event_id=first.last_id)
    assert resumed.status == 204
    empty = new_chat(base)
    assert stream(base, f"/conversations/inference/{empty}").status == 409
    missing = stream(base, "/conversations/inference/3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert missing.status == 404


def test_regenerate_keeps_the_old_answer(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", "Name a colour."))
    first = stream(base, f"/conversations/inference/{chat_id}")
    second = stream(base, f"/conversations/inference/{chat_id}?regenerate=true")
    assert second.status == 200
    assert second.generation_id != first.generation_id
    saved = messages(base, chat_id)
    assert [m["role"] for m in saved] == ["Human", "Assistant", "Assistant"]
    assert saved[1]["generation_id"] == first.generation_id
    assert saved[2]["generation_id"] == second.generation_id
    assert saved[2]["message"] == second.text
    bad = stream(base, f"/conversations/inference/{chat_id}?regenerate=maybe")
    assert bad.status == 422


def test_two_clients_and_a_late_joiner_get_the_same_text(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", "Explain in a few sentences why the sky is blue."))
    results: dict[str, Received] = {}
    started = threading.Event()

    def first() -> None:
        results["a"] = stream(
            base,
            f"/conversations/inference/{chat_id}",
            on_event=lambda e: e.event == "message" and started.set(),
        )

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(30)
    time.sleep(0.3)  # well into the answer
    results["b"] = stream(base, f"/conversations/inference/{chat_id}")
    thread.join(60)
    a, b = results["a"], results["b"]
    assert a.generation_id == b.generation_id  # attached, not a second generation
    assert a.text == b.text
    assert a.done is not None and a.done["message"]["message"] == a.text
    assert [m["role"] for m in messages(base, chat_id)] == ["Human", "Assistant"]


def test_resume_with_last_event_id_gets_exactly_the_tail(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", "List five fruits and describe each briefly."))
    head = stream(base, f"/conversations/inference/{chat_id}", max_tokens=5)
    assert len(head.tokens) == 5
    tail = stream(base, f"/conversations/inference/{chat_id}", last_event_id=head.last_id)
    assert tail.status == 200
    assert tail.done is not None
    assert not tail.named("generation")  # nothing sent twice
    saved = tail.done["message"]["message"]
    assert head.text + tail.text == saved


def test_disconnect_within_grace_reattaches(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", STORY))
    head = stream(base, f"/conversations/inference/{chat_id}", max_tokens=3)
    time.sleep(0.1)  # a page reload, shorter than the 1 s grace period
    tail = stream(base, f"/conversations/inference/{chat_id}", last_event_id=head.last_id)
    assert tail.done is not None
    assert tail.done["status"] == "done"
    assert head.text + tail.text == tail.done["message"]["message"]


def test_leaving_longer_than_grace_cancels_and_keeps_partial(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", STORY))
    head = stream(base, f"/conversations/inference/{chat_id}", max_tokens=3)

    def cancelled() -> bool:
        saved = messages(base, chat_id)
        return len(saved) == 2 and saved[-1]["status"] == "cancelled"

    wait_until(cancelled, "the abandoned generation to be cancelled", timeout=60)
    partial = messages(base, chat_id)[-1]["message"]
    assert isinstance(partial, str) and partial.startswith(head.text)
    rest = stream(base, f"/conversations/inference/{chat_id}", last_event_id=head.last_id)
    assert rest.done is not None and rest.done["status"] == "cancelled"
    assert rest.done["finish_reason"] == "abandoned"
    assert head.text + rest.text == partial


def test_stop_cancels_at_once_and_keeps_partial(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", STORY))
    seen: list[str] = []
    stopped_at: list[float] = []

    def on_event(event: object) -> None:
        if getattr(event, "event", "") == "message":
            seen.append("t")
            if len(seen) == 5:
                response = httpx.post(f"{base}/conversations/stop/{chat_id}")
                assert response.status_code == 202
                assert response.json()["status"] == "cancelling"
                stopped_at.append(time.monotonic())

    got = stream(base, f"/conversations/inference/{chat_id}", on_event=on_event)
    ended_at = time.monotonic()
    assert got.done is not None
    assert got.done["status"] == "cancelled" and got.done["finish_reason"] == "cancelled"
    assert got.done["message"]["message"] == got.text
    assert len(got.tokens) < 60  # stopped long before the 200-token limit
    assert ended_at - stopped_at[0] < 60  # not a hang; the token count above is the real check
    saved = messages(base, chat_id)[-1]
    assert saved["status"] == "cancelled" and saved["message"] == got.text
    nothing = httpx.post(f"{base}/conversations/stop/{chat_id}")
    assert nothing.status_code == 409


def test_multibyte_text_streams_without_replacement_characters(stack: Stack) -> None:
    base = stack.url()
    # A few-shot chat that makes the small model answer in Japanese and emoji.
    chat_id = new_chat(
        base,
        ("Human", "Repeat after me: 😀"),
        ("Assistant", "😀"),
        ("Human", "Repeat after me: 東京"),
        ("Assistant", "東京"),
        ("Human", "Repeat after me: café 😀 東京 naïve"),
    )
    got = stream(base, f"/conversations/inference/{chat_id}")
    assert got.done is not None
    assert "\ufffd" not in got.text
    assert any(0x3040 <= ord(ch) <= 0x9FFF for ch in got.text), got.text  # CJK
    assert any(ord(ch) > 0xFFFF for ch in got.text), got.text  # 4-byte UTF-8 (emoji)
    assert got.done["message"]["message"] == got.text
    assert messages(base, chat_id)[-1]["message"] == got.text


def test_chat_longer_than_the_context_window_still_answers(stack: Stack) -> None:
    base = stack.url()
    filler = "This is an old message about nothing in particular. " * 30
    turns = []
    for i in range(12):
        turns += [("Human", f"{i}: {filler}"), ("Assistant", f"Noted {i}. {filler}")]
    chat_id = new_chat(base, *turns, ("Human", "What is the capital of France?"))
    got = stream(base, f"/conversations/inference/{chat_id}")
    assert got.done is not None and got.done["status"] == "done"
    assert got.text.strip()
    assert got.done["usage"]["prompt_tokens"] <= 1024 - 200


def test_stream_frames_split_multiline_tokens(stack: Stack) -> None:
    base = stack.url()
    chat_id = new_chat(base, ("Human", "Write a short poem of four lines about rain."))
    with (
        httpx.Client(base_url=base, timeout=60) as client,
        client.stream("GET", f"/conversations/inference/{chat_id}") as response,
    ):
        raw = "".join(response.iter_text())
    # Every line of the stream is an SSE field or a comment; no bare text lines.
    for line in raw.split("\n"):
        assert line == "" or line.startswith(("id: ", "event: ", "data: ", ": ")), line
    done = next(b for b in raw.split("\n\n") if "event: done" in b)
    payload = json.loads(done.split("data: ", 1)[1])
    assert "\n" in payload["message"]["message"]


def test_a_burst_of_clients_shares_a_few_redis_connections(stack: Stack) -> None:
    base = stack.start_web("web_small_pool", REDIS_MAX_CONNECTIONS="6")
    web = psutil.Process(stack.processes["web_small_pool"].pid)
    chat_id = new_chat(base, ("Human", "Explain in a few sentences why the sky is blue."))
    peak = 0
    generation: list[str] = []  # the shared answer's id, from the first event id seen

    async def one() -> str:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            async with aconnect_sse(client, "GET", f"/conversations/inference/{chat_id}") as source:
                if source.response.status_code == 200:
                    parts = []
                    async for event in source.aiter_sse():
                        if event.id and not generation:
                            generation.append(event.id.partition(":")[0])
                        if event.event == "message":
                            parts.append(event.data)
                    return "".join(parts)
                # On a busy machine a client may connect after the answer ended: the chat has
                # nothing left to answer (409), and the client replays the answer from its start.
                assert source.response.status_code == 409 and generation
            headers = {"Last-Event-ID": f"{generation[0]}:0"}
            async with aconnect_sse(
                client, "GET", f"/conversations/inference/{chat_id}", headers=headers
            ) as source:
                assert source.response.status_code == 200
                return "".join([e.data async for e in source.aiter_sse() if e.event == "message"])

    async def burst() -> list[str]:
        nonlocal peak
        tasks = [asyncio.create_task(one()) for _ in range(120)]
        while not all(task.done() for task in tasks):
            redis_sockets = [
                c for c in web.net_connections(kind="tcp") if c.raddr and c.raddr.port == 6379
            ]
            peak = max(peak, len(redis_sockets))
            await asyncio.sleep(0.05)
        return [task.result() for task in tasks]

    texts = asyncio.run(burst())
    assert len(set(texts)) == 1 and texts[0]
    assert asyncio.run(one()) == texts[0]  # a client after the end replays the same answer
    assert texts[0] == messages(base, chat_id)[-1]["message"]
    # The bounded pool, the hub's one pub/sub connection, and the Celery producer.
    assert peak <= 6 + 3, peak
