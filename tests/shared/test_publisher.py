"""The token publisher on real Redis: order, exactly once, flags, and a Redis that stalls."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import redis

from shared.publisher import PublishError, TokenPublisher
from shared.tokenbus import TokenWriter, cancel_key, events_key, parse_entries, seen_key


class StallingProxy:
    """A TCP proxy to Redis that can hold every byte (Redis 'hangs') for this test only."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.open.wait()
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def proxy(redis_url: str) -> Iterator[StallingProxy]:
    parsed = urlparse(redis_url)
    stalling = StallingProxy((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    yield stalling
    stalling.open.set()
    stalling.close()


def token_events(client: redis.Redis, generation_id: str) -> list[str]:
    entries = parse_entries(list(client.xrange(events_key(generation_id))))
    return [event.data for event in entries if event.type == "token"]


def writer_for(client: redis.Redis, *, check_listeners: bool = False) -> TokenWriter:
    return TokenWriter(client, str(uuid.uuid4()), ttl_s=60, check_listeners=check_listeners)


def test_tokens_arrive_in_order_exactly_once(client: redis.Redis) -> None:
    writer = writer_for(client)
    words = [f"w{i} " for i in range(500)]
    with TokenPublisher(writer, window_s=0.005) as publisher:
        for word in words:
            publisher.put_token(word)
        publisher.flush(30)
        assert publisher.idle
    events = token_events(client, writer.generation_id)
    assert "".join(events) == "".join(words)
    assert publisher.sent_tokens == len(words)
    assert len(events) == publisher.sent_events <= len(words)  # coalesced, never split


def test_tokens_coalesce_for_the_window_and_a_lone_token_still_goes_out(
    client: redis.Redis,
) -> None:
    writer = writer_for(client)
    with TokenPublisher(writer, window_s=0.2) as publisher:
        started = time.monotonic()
        for i in range(40):  # a token every 10 ms (or more on a busy machine)
            publisher.put_token(f"t{i} ")
            time.sleep(0.01)
        publisher.flush(30)
        windows = (time.monotonic() - started) / 0.2
        # At most one send per window (plus the first token at once and the flush), never
        # one per token.
        assert 2 <= publisher.sent_events <= windows + 3
        publisher.put_token("last")  # after a pause, with no token behind it and no flush
        deadline = time.monotonic() + 10  # a wide "not a hang" guard
        while not publisher.idle and time.monotonic() < deadline:
            time.sleep(0.01)
        assert publisher.idle
    assert "".join(token_events(client, writer.generation_id)).endswith("t39 last")


def test_the_decode_loop_does_not_wait_for_a_stalled_redis(
    client: redis.Redis, proxy: StallingProxy, redis_url: str
) -> None:
    parsed = urlparse(redis_url)
    slow = redis.Redis(port=proxy.port, db=int(parsed.path.strip("/") or 0))
    writer = writer_for(slow)
    with TokenPublisher(writer, window_s=0.0) as publisher:
        publisher.put_token("a")
        publisher.flush(30)
        proxy.open.clear()  # Redis stops answering
        started = time.monotonic()
        for i in range(200):
            publisher.put_token(f"{i},")
        put_s = time.monotonic() - started
        with pytest.raises(PublishError):
            publisher.flush(0.5)  # nothing got through while stalled...
        assert put_s < 0.5  # ...yet every put returned at once (a wide 'not a hang' bound)
        proxy.open.set()
        publisher.flush(30)
    assert "".join(token_events(client, writer.generation_id)) == "a" + "".join(
        f"{i}," for i in range(200)
    )


def test_delivered_says_whether_the_tokens_are_in_redis_within_the_wait(
    client: redis.Redis, proxy: StallingProxy, redis_url: str
) -> None:
    parsed = urlparse(redis_url)
    slow = redis.Redis(port=proxy.port, db=int(parsed.path.strip("/") or 0))
    writer = writer_for(slow)
    with TokenPublisher(writer, window_s=0.2) as publisher:
        publisher.put_token("first")
        assert publisher.delivered(30)  # a wide "not a hang" guard: true at once
        assert token_events(client, writer.generation_id) == ["first"]
        proxy.open.clear()  # Redis stops answering
        publisher.put_token("second")
        assert not publisher.delivered(0.2)  # bounded: the caller goes on
        proxy.open.set()
        publisher.flush(30)
    assert token_events(client, writer.generation_id) == ["first", "second"]


def test_the_stop_flag_is_read_locally_after_a_send(client: redis.Redis) -> None:
    writer = writer_for(client, check_listeners=True)
    client.set(seen_key(writer.generation_id), "1", ex=60)
    with TokenPublisher(writer, window_s=0.0) as publisher:
        publisher.put_token("x")
        publisher.flush(30)
        assert publisher.stop_flag == ""
        client.set(cancel_key(writer.generation_id), "1", ex=60)
        publisher.put_token("y")
        publisher.flush(30)
        assert publisher.stop_flag == "cancelled"


def test_abandoned_when_nobody_listens(client: redis.Redis) -> None:
    writer = writer_for(client, check_listeners=True)
    with TokenPublisher(writer, window_s=0.0) as publisher:
        publisher.put_token("x")
        publisher.flush(30)
        assert publisher.stop_flag == "abandoned"


def test_a_batch_sent_twice_is_appended_once(client: redis.Redis) -> None:
    writer = writer_for(client)
    first, _ = writer.append("token", "a", mark="s:0")
    again, _ = writer.append("token", "a", mark="s:0")  # the reply of the first was lost
    writer.append("token", "b", mark="s:1")
    assert first and again == ""
    assert token_events(client, writer.generation_id) == ["a", "b"]


def test_a_failed_send_is_retried_in_order(client: redis.Redis) -> None:
    writer = writer_for(client)
    real = writer.append
    failures = iter([True, True, False])

    def flaky(kind: str, data: str = "", *, mark: str = "", previous: str = "") -> tuple[str, str]:
        if next(failures, False):
            raise redis.ConnectionError("connection reset")
        return real(kind, data, mark=mark, previous=previous)  # type: ignore[arg-type]

    writer.append = flaky  # type: ignore[method-assign]
    with TokenPublisher(writer, window_s=0.0) as publisher:
        for word in ("one ", "two ", "three"):
            publisher.put_token(word)
        publisher.flush(30)
    assert "".join(token_events(client, writer.generation_id)) == "one two three"


def test_put_after_close_is_refused(client: redis.Redis) -> None:
    publisher = TokenPublisher(writer_for(client))
    publisher.close()
    with pytest.raises(RuntimeError):
        publisher.put_token("late")


def test_a_redis_that_lost_the_tokens_gets_a_restart_and_the_whole_text(
    client: redis.Redis,
) -> None:
    writer = writer_for(client)
    gid = writer.generation_id
    with TokenPublisher(writer, window_s=0.0) as publisher:
        publisher.put_token("Once ")
        publisher.put_token("upon ")
        publisher.flush(30)
        # Redis restarts empty: the stream and the sender's last mark are gone.
        client.delete(events_key(gid), f"chatbot:gen:{{{gid}}}:sent")
        publisher.put_token("a time")
        publisher.flush(30)
    entries = parse_entries(list(client.xrange(events_key(gid))))
    assert [e.type for e in entries] == ["restart", "token"]
    assert entries[-1].data == "Once upon a time"  # clients end with the whole text
