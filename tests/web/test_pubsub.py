"""The token hub's own subscriber connection (``web/pubsub.py``) on the real Redis: live
from the hub's first moment, authenticated, named, replaced when lost or silent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError

from shared import tokenbus
from tests.web.conftest import collect_stream
from web import metrics, pubsub, tokenhub
from web.tokenhub import TokenHub

URL = os.environ["REDIS_URL"]


@pytest.fixture
def no_quiet_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only live delivery (and the hub's own resyncs) can end a stream in time."""
    monkeypatch.setattr(tokenhub, "QUIET_CHECK_S", 3600.0)


async def _body(hub: TokenHub, gid: str) -> str:
    return b"".join(await collect_stream(hub, gid, keepalive_s=30)).decode()


@contextlib.asynccontextmanager
async def _running_hub() -> AsyncIterator[TokenHub]:
    """A started hub on the test run's Redis, stopped and closed afterwards."""
    client = aioredis.Redis.from_url(URL)
    hub = TokenHub(client, grace_s=5.0)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()
        await client.aclose()


async def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Waits for ``condition``; a wide "not a hang" guard, not a speed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        await asyncio.sleep(0.01)


def _sample(name: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name)
    assert value is not None
    return value


def _text(body: str) -> str:
    """The tokens of an SSE body (events without a name), joined."""
    return "".join(
        line[len("data: ") :]
        for block in body.split("\n\n")
        if "event:" not in block
        for line in block.splitlines()
        if line.startswith("data: ")
    )


def _append(client: redis.Redis, gid: str, kind: tokenbus.EventType, data: object) -> str:
    return tokenbus.append(client, gid, kind, data, ttl_s=60)


async def _hub_connection(admin: redis.Redis, hub: TokenHub) -> dict[str, object]:
    """The hub's subscriber connection as ``CLIENT LIST`` shows it, once it is there."""
    deadline = time.monotonic() + 30  # a "not a hang" guard
    while True:
        clients = await asyncio.to_thread(admin.client_list, "pubsub")
        named = [c for c in clients if c.get("name") == hub.connection_name]
        if named:
            return named[0]
        assert time.monotonic() < deadline, "the hub has no connection"
        await asyncio.sleep(0.05)


async def test_streams_are_live_from_the_hubs_first_moment(
    sync_redis: redis.Redis, no_quiet_check: None
) -> None:
    # A client that reconnects the instant a web process starts (after a deploy, all of
    # them do) subscribes before the hub's connection exists: it is subscribed with it.
    for _ in range(3):
        gid = str(uuid.uuid4())
        async with _running_hub() as hub:
            reader = asyncio.create_task(_body(hub, gid))
            await _until(lambda hub=hub: hub.listener_count == 1)
            await asyncio.sleep(0.3)  # subscribed and replayed: now following live
            for piece in ("live", " at", " once"):
                await asyncio.to_thread(_append, sync_redis, gid, "token", piece)
            await asyncio.to_thread(_append, sync_redis, gid, "done", {"status": "done"})
            body = await asyncio.wait_for(reader, timeout=30)  # no quiet check to save it
        assert _text(body) == "live at once" and "event: done" in body


async def test_a_lost_connection_is_replaced_and_nothing_sent_meanwhile_is_missed(
    sync_redis: redis.Redis, no_quiet_check: None
) -> None:
    gid = str(uuid.uuid4())
    async with _running_hub() as hub:
        reader = asyncio.create_task(_body(hub, gid))
        await _until(lambda: bool(hub.listening))
        first = await _hub_connection(sync_redis, hub)
        reconnects = _sample("chatbot_tokenhub_reconnects_total")
        assert _sample("chatbot_tokenhub_connected") == 1
        await asyncio.sleep(0.3)  # subscribed and replayed: now following live
        await asyncio.to_thread(_append, sync_redis, gid, "token", "before")
        # Redis drops the hub's connection; what is published before it is back reaches
        # the listener from the stream (the hub re-reads it once subscribed again).
        assert sync_redis.client_kill_filter(_id=str(first["id"])) == 1
        await asyncio.to_thread(_append, sync_redis, gid, "token", " after")
        await asyncio.to_thread(_append, sync_redis, gid, "done", {"status": "done"})
        body = await asyncio.wait_for(reader, timeout=30)
        second = await _hub_connection(sync_redis, hub)  # the old one was killed
    assert _text(body) == "before after" and "event: done" in body
    assert second["id"] != first["id"]
    assert _sample("chatbot_tokenhub_reconnects_total") == reconnects + 1


@pytest.fixture
async def acl_user(sync_redis: redis.Redis) -> AsyncIterator[str]:
    """A Redis URL with a user and password of its own (ACL)."""
    name = f"hub-test-{uuid.uuid4().hex[:8]}"
    sync_redis.acl_setuser(
        name, enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    parts = urlsplit(URL)
    yield urlunsplit(parts._replace(netloc=f"{name}:s3cret@{parts.hostname}:{parts.port}"))
    sync_redis.acl_deluser(name)


async def test_the_subscriber_authenticates_as_the_clients_user(
    acl_user: str, sync_redis: redis.Redis
) -> None:
    received: list[bytes] = []
    client = aioredis.Redis.from_url(acl_user)
    subscriber = await pubsub.connect(
        client,
        name="hub-auth-test",
        on_message=lambda channel, data: received.append(data),
        on_subscribed=lambda channel: None,
    )
    try:
        subscriber.send("SUBSCRIBE", "hub-auth-test")
        await _until(lambda: sync_redis.pubsub_numsub("hub-auth-test")[0][1] == 1)
        sync_redis.publish("hub-auth-test", "hello")
        await _until(lambda: bool(received))
    finally:
        subscriber.close()
        await client.aclose()
    assert received == [b"hello"]

    wrong = aioredis.Redis.from_url(acl_user.replace("s3cret", "wrong"))
    with pytest.raises(AuthenticationError):
        await pubsub.connect(
            wrong, name="x", on_message=lambda c, d: None, on_subscribed=lambda c: None
        )
    await wrong.aclose()


async def test_a_silent_peer_is_pinged_then_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    # A peer that vanished without a reset (a failover, a dead network path) sends nothing:
    # the subscriber asks once, then gives up on it, so the hub can connect again.
    monkeypatch.setattr(pubsub, "PING_AFTER_S", 0.2)
    heard = bytearray()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                heard.extend(data)  # reads everything, answers nothing
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    subscriber = await pubsub.connect(
        client, name="silent", on_message=lambda c, d: None, on_subscribed=lambda c: None
    )
    try:
        subscriber.keep_alive()
        assert not subscriber.lost.done() and b"PING" not in heard  # not quiet long yet
        await asyncio.sleep(0.3)
        subscriber.keep_alive()  # quiet: asks
        await _until(lambda: b"PING" in heard)
        assert not subscriber.lost.done()
        await asyncio.sleep(0.3)
        subscriber.keep_alive()  # no answer: gone
        await asyncio.wait_for(subscriber.lost, timeout=10)
    finally:
        subscriber.close()
        server.close()
        await client.aclose()


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server listening on a Unix socket only."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    assert binary, "redis-server is needed"
    path = tmp_path / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"unix://{path}"
    finally:
        process.terminate()
        process.wait(10)


async def test_the_subscriber_connects_over_a_unix_socket(unix_redis: str) -> None:
    received: list[tuple[bytes, bytes]] = []
    confirmed: list[bytes] = []
    client = aioredis.Redis.from_url(unix_redis)
    subscriber = await pubsub.connect(
        client,
        name="hub-unix-test",
        on_message=lambda channel, data: received.append((channel, data)),
        on_subscribed=confirmed.append,
    )
    try:
        subscriber.send("SUBSCRIBE", "unix-test")
        await _until(lambda: bool(confirmed))
        await client.publish("unix-test", "over the socket")
        await _until(lambda: bool(received))
    finally:
        subscriber.close()
        await client.aclose()
    assert confirmed == [b"unix-test"]
    assert received == [(b"unix-test", b"over the socket")]
