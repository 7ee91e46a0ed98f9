"""One pub/sub subscriber per web process, fanning generation events out to its streams.

Thousands of open streams share one Redis connection: the hub subscribes to a generation's
channel while at least one local client listens to it, and keeps the listener heartbeat
(``seen`` key) fresh so workers know somebody still wants the tokens. Once per generation
(not per listener) it also checks that a quiet stream has not lost its ending: a
generation that ended while Redis was away gets its terminal event from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.tokenbus import Event, generation_from_channel, live_channel, parse_live, seen_pairs

log = logging.getLogger(__name__)

#: Put in a listener's queue when live delivery may have had a gap: re-read the stream.
RESYNC = None
#: A generation whose stream has been quiet this long is checked for a lost ending.
QUIET_CHECK_S = 5.0


async def mark_seen(client: aioredis.Redis, generation_ids: list[str], *, grace_s: float) -> None:
    """Tell workers these generations have listeners, for ``grace_s`` more seconds."""
    if not generation_ids:
        return
    async with client.pipeline(transaction=False) as pipe:
        for key, px in seen_pairs(generation_ids, grace_s=grace_s):
            pipe.set(key, "1", px=px)
        await pipe.execute()


@dataclass(eq=False)  # compared by identity, kept in sets
class Subscription:
    """A local listener of one generation."""

    generation_id: str
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


class TokenHub:
    """Fans one pub/sub connection out to every local listener."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        grace_s: float,
        check_quiet: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.grace_s = grace_s
        self.check_quiet = check_quiet
        self._last_event: dict[str, float] = {}
        self._pubsub = client.pubsub()
        self._listeners: dict[str, set[Subscription]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._control = f"chatbot:hub:{uuid.uuid4()}"
        self._closing = False
        self._reconnecting = False

    @property
    def listening(self) -> list[str]:
        """Generation ids that have at least one local listener."""
        return list(self._listeners)

    @property
    def listener_count(self) -> int:
        return sum(len(subs) for subs in self._listeners.values())

    async def start(self) -> None:
        """Start reading; a Redis that is down now is retried, not fatal."""
        self._tasks = [
            asyncio.create_task(self._read(), name="tokenhub-read"),
            asyncio.create_task(self._heartbeat(), name="tokenhub-heartbeat"),
        ]

    async def stop(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A Redis read can swallow a cancellation; the loops also watch ``_closing``.
            await asyncio.wait(self._tasks, timeout=3.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pubsub.aclose(), timeout=2.0)  # type: ignore[no-untyped-call, unused-ignore]

    @contextlib.asynccontextmanager
    async def subscribe(self, generation_id: str) -> AsyncIterator[Subscription]:
        """Listen to a generation; the subscription is live on the server when this enters."""
        subscription = Subscription(generation_id)
        channel = live_channel(generation_id)
        async with self._lock:
            first = generation_id not in self._listeners
            self._listeners.setdefault(generation_id, set()).add(subscription)
            if first:
                self._last_event[generation_id] = time.monotonic()
                confirmed = self._confirmed[channel] = asyncio.Event()
                await self._pubsub.subscribe(channel)
            else:
                confirmed = self._confirmed.get(channel) or asyncio.Event()
        await mark_seen(self.client, [generation_id], grace_s=self.grace_s)
        try:
            # Wait for the server's confirmation: only then is replaying the stream safe.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(confirmed.wait(), timeout=2.0)
            if not confirmed.is_set():
                subscription.queue.put_nowait(RESYNC)
            yield subscription
        finally:
            async with self._lock:
                subs = self._listeners.get(generation_id, set())
                subs.discard(subscription)
                if not subs:
                    self._listeners.pop(generation_id, None)
                    self._last_event.pop(generation_id, None)
                    self._confirmed.pop(channel, None)
                    with contextlib.suppress(RedisError, ConnectionError):
                        await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while not self._closing:
            try:
                if not self._pubsub.subscribed:
                    # A control channel keeps the connection subscribed with no listeners.
                    await self._pubsub.subscribe(self._control)
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, ConnectionError, OSError) as exc:
                log.warning("token hub lost its Redis connection: %s", exc)
                self._resync_all()
                self._reconnecting = True
                await asyncio.sleep(0.5)
                continue
            if self._reconnecting:
                # Subscribed again: what was published while we were away is in the
                # streams only, so every listener re-reads its stream once more.
                self._reconnecting = False
                self._resync_all()
            if message is None:
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if message["type"] == "subscribe":
                if (confirmed := self._confirmed.get(channel)) is not None:
                    confirmed.set()
                continue
            if message["type"] != "message" or channel == self._control:
                continue
            event = parse_live(message["data"])
            generation_id = generation_from_channel(channel)
            self._last_event[generation_id] = time.monotonic()
            for subscription in self._listeners.get(generation_id, ()):
                subscription.queue.put_nowait(event)

    def _resync_all(self) -> None:
        for subs in self._listeners.values():
            for subscription in subs:
                subscription.queue.put_nowait(RESYNC)

    async def _heartbeat(self) -> None:
        interval = max(min(self.grace_s / 3, 2.0), 0.2)
        while not self._closing:
            await asyncio.sleep(interval)
            try:
                await mark_seen(self.client, self.listening, grace_s=self.grace_s)
            except (RedisError, ConnectionError, OSError) as exc:
                log.warning("token hub heartbeat failed: %s", exc)
            await self._check_quiet()

    async def _check_quiet(self) -> None:
        """Once per generation, however many listen: has a quiet stream lost its end?"""
        now = time.monotonic()
        for generation_id, last in list(self._last_event.items()):
            if now - last < QUIET_CHECK_S:
                continue
            self._last_event[generation_id] = now
            if self.check_quiet is not None:
                try:
                    await self.check_quiet(generation_id)
                except Exception as exc:  # a check that fails is tried again later
                    log.warning("quiet-stream check of %s failed: %s", generation_id, exc)
            # A backstop for live delivery: the quiet streams re-read their streams.
            for subscription in self._listeners.get(generation_id, ()):
                subscription.queue.put_nowait(RESYNC)
