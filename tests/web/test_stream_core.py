"""The stream core without a server: SSE framing, the token hub and ``stream_generation``
on the real Redis, fed by the same token bus calls workers and the life cycle make."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from shared import tokenbus
from tests.web.conftest import collect_stream
from web import tokenhub
from web.sse import frame, parse_last_event_id
from web.tokenhub import TokenHub

URL = os.environ["REDIS_URL"]


@pytest.fixture
async def hub() -> AsyncIterator[TokenHub]:
    client = aioredis.Redis.from_url(URL)
    hub = TokenHub(client, grace_s=1.0)
    await hub.start()
    yield hub
    await hub.stop()
    await client.aclose()


def test_frame_splits_lines_and_names_events() -> None:
    assert (
        frame("a\nb", event="done", event_id="g:1-0")
        == b"id: g:1-0\nevent: done\ndata: a\ndata: b\n\n"
    )
    assert frame("x\r\ny") == b"data: x\ndata: y\n\n"


@pytest.mark.parametrize(
    "value",
    [None, "", "nope", "not-a-uuid:1-0", f"{uuid.uuid4()}:abc", f"{uuid.uuid4()}:1-x"],
)
def test_last_event_ids_that_name_nothing_are_ignored(value: str | None) -> None:
    assert parse_last_event_id(value) is None


def test_last_event_id_names_a_generation_and_an_entry() -> None:
    gid = uuid.uuid4()
    assert parse_last_event_id(f"{gid}:1700000000000-3") == (gid, "1700000000000-3")


def _append(client: redis.Redis, gid: str, kind: tokenbus.EventType, data: object) -> str:
    return tokenbus.append(client, gid, kind, data, ttl_s=60)


async def test_a_stream_replays_then_follows_live_to_its_end(
    hub: TokenHub, sync_redis: redis.Redis
) -> None:
    gid = str(uuid.uuid4())
    _append(sync_redis, gid, "generation", {"attempt": 1})
    _append(sync_redis, gid, "token", "Hel")
    reader = asyncio.create_task(collect_stream(hub, gid))
    await asyncio.sleep(0.3)  # now following live
    for piece in ("lo", " world"):
        await asyncio.to_thread(_append, sync_redis, gid, "token", piece)
    await asyncio.to_thread(_append, sync_redis, gid, "done", {"status": "done"})
    chunks = await asyncio.wait_for(reader, timeout=30)
    body = b"".join(chunks).decode()
    text = "".join(
        line[len("data: ") :]
        for block in body.split("\n\n")
        if "event:" not in block
        for line in block.splitlines()
        if line.startswith("data: ")
    )
    assert text == "Hello world"  # every token once, in order
    assert body.index("event: generation") < body.index("event: done")
    assert body.rstrip().endswith('data: {"status":"done"}')


async def test_a_resumed_stream_sends_only_what_came_after(
    hub: TokenHub, sync_redis: redis.Redis
) -> None:
    gid = str(uuid.uuid4())
    _append(sync_redis, gid, "token", "one ")
    middle = _append(sync_redis, gid, "token", "two ")
    _append(sync_redis, gid, "token", "three")
    _append(sync_redis, gid, "done", {"status": "done"})
    chunks = await asyncio.wait_for(collect_stream(hub, gid, after=middle), timeout=30)
    body = b"".join(chunks).decode()
    assert "data: three" in body
    assert "data: one" not in body and "data: two" not in body


async def test_the_quiet_check_runs_once_per_generation_however_many_listen(
    sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokenhub, "QUIET_CHECK_S", 0.3)
    client = aioredis.Redis.from_url(URL)
    checked: list[str] = []
    everyone_listens = asyncio.Event()

    def end_once(generation_id: str) -> None:  # as the life cycle's ensure_terminal does
        if not any(e.terminal for e in tokenbus.events(sync_redis, generation_id)):
            _append(sync_redis, generation_id, "done", {"status": "done"})

    async def check(generation_id: str) -> None:
        if everyone_listens.is_set():
            checked.append(generation_id)
            await asyncio.to_thread(end_once, generation_id)

    hub = TokenHub(client, grace_s=0.6, check_quiet=check)
    await hub.start()
    gid = str(uuid.uuid4())
    try:
        readers = [asyncio.create_task(collect_stream(hub, gid)) for _ in range(20)]
        while hub.listener_count < 20:
            await asyncio.sleep(0.05)
        everyone_listens.set()
        started = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
        elapsed = time.monotonic() - started
    finally:
        await hub.stop()
        await client.aclose()
    # Checked per generation, not per listener: at most once per QUIET_CHECK_S for 20.
    assert checked and set(checked) == {gid}
    assert len(checked) <= elapsed / 0.3 + 1
    assert all(b"event: done" in b"".join(chunks) for chunks in results)


async def test_listeners_keep_the_generation_seen(hub: TokenHub, sync_redis: redis.Redis) -> None:
    gid = str(uuid.uuid4())
    async with hub.subscribe(gid):
        await asyncio.sleep(1.5)  # longer than the grace: the heartbeat refreshed it
        assert tokenbus.has_listeners(sync_redis, gid)
    await asyncio.sleep(1.2)
    assert not tokenbus.has_listeners(sync_redis, gid)


def test_token_writer_reads_the_stop_flags(sync_redis: redis.Redis) -> None:
    gid = str(uuid.uuid4())
    writer = tokenbus.TokenWriter(sync_redis, gid, ttl_s=60, check_listeners=True)
    assert writer.append("token", "a")[1] == "abandoned"  # nobody listens
    tokenbus.mark_seen(sync_redis, [gid], grace_s=5)
    assert writer.append("token", "b")[1] == ""
    tokenbus.request_cancel(sync_redis, gid, ttl_s=60)
    assert writer.append("token", "c")[1] == "cancelled"
    assert writer.stop_requested() == "cancelled"


def test_partial_text_is_the_last_attempts_tokens(sync_redis: redis.Redis) -> None:
    gid = str(uuid.uuid4())
    for kind, data in [
        ("generation", {}),
        ("token", "lost "),
        ("restart", {}),
        ("generation", {}),
        ("token", "kept "),
        ("token", "text"),
    ]:
        _append(sync_redis, gid, kind, data)  # type: ignore[arg-type]
    assert tokenbus.partial_text(tokenbus.events(sync_redis, gid)) == "kept text"
