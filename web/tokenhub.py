"""One pub/sub subscriber per web process, fanning generation events out to its streams.

Thousands of open streams share one Redis connection: the hub subscribes to a generation's
channel while at least one local client listens to it, and keeps the listener heartbeat
(``seen`` key) fresh so workers know somebody still wants the tokens. Once per generation
(not per listener) it also checks that a quiet stream has not lost its ending: a
generation that ended while Redis was away gets its terminal event from the database.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.tokenbus import Event, live_channel, parse_live, seen_pairs
from web import metrics
from web.pubsub import Subscriber, connect

log = logging.getLogger(__name__)

#: Put in a listener's queue when live delivery may have had a gap: re-read the stream.
RESYNC = None
#: A generation whose stream has been quiet this long is checked for a lost ending.
QUIET_CHECK_S = 5.0
#: How often the subscriber connection is checked for a peer that stopped answering.
KEEP_ALIVE_EVERY_S = 2.0


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
    """A local listener of one generation: the events the hub hands it, in order."""

    generation_id: str
    items: collections.deque[Event | None] = field(default_factory=collections.deque)
    _waiter: asyncio.Future[None] | None = None

    def put(self, item: Event | None) -> None:
        self.items.append(item)
        self.wake()

    def wake(self) -> None:
        """End a ``wait`` now (an item came, or the caller has something else to check)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until an item is waiting, ``wake`` is called, or ``timeout`` seconds pass."""
        if self.items:
            return
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = loop.call_later(timeout, self.wake)  # lighter than asyncio.timeout()
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None


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
        self._listeners: dict[str, set[Subscription]] = {}
        # By channel name as Redis sends it: the subscription's confirmation, and how many
        # SUBSCRIBEs of it await theirs (confirmed only when the last one is answered).
        self._generation_of: dict[bytes, str] = {}
        self._confirmed: dict[bytes, asyncio.Event] = {}
        self._unanswered: dict[bytes, int] = {}
        self._subscriber: Subscriber | None = None
        self._tasks: list[asyncio.Task[None]] = []
        hub_id = uuid.uuid4()
        self._control = f"chatbot:hub:{hub_id}".encode()
        #: The subscriber connection's name in ``CLIENT LIST``.
        self.connection_name = f"chatbot-hub-{hub_id.hex[:12]}"
        self._closing = False

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
            asyncio.create_task(self._connection(), name="tokenhub-connection"),
            asyncio.create_task(self._heartbeat(), name="tokenhub-heartbeat"),
        ]

    async def stop(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=3.0)
        if self._subscriber is not None:
            self._subscriber.close()
        metrics.TOKENHUB_CONNECTED.set(0)

    @contextlib.asynccontextmanager
    async def subscribe(self, generation_id: str) -> AsyncIterator[Subscription]:
        """Listen to a generation; the subscription is live on the server when this enters."""
        subscription = Subscription(generation_id)
        channel = live_channel(generation_id).encode()
        if generation_id not in self._listeners:
            self._listeners[generation_id] = set()
            self._last_event[generation_id] = time.monotonic()
            self._generation_of[channel] = generation_id
            self._confirmed[channel] = asyncio.Event()
            self._send_subscribe([channel])  # not connected: the connection subscribes it
        self._listeners[generation_id].add(subscription)
        confirmed = self._confirmed[channel]
        await mark_seen(self.client, [generation_id], grace_s=self.grace_s)
        try:
            # Wait for the server's confirmation: only then is replaying the stream safe.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(confirmed.wait(), timeout=2.0)
            if not confirmed.is_set():
                subscription.put(RESYNC)
            yield subscription
        finally:
            subs = self._listeners.get(generation_id, set())
            subs.discard(subscription)
            if not subs:
                self._listeners.pop(generation_id, None)
                self._last_event.pop(generation_id, None)
                self._generation_of.pop(channel, None)
                self._confirmed.pop(channel, None)
                if self._subscriber is not None:
                    self._subscriber.send("UNSUBSCRIBE", channel)

    def _send_subscribe(self, channels: list[bytes]) -> None:
        if self._subscriber is None or not self._subscriber.connected:
            return
        for channel in channels:
            self._unanswered[channel] = self._unanswered.get(channel, 0) + 1
        self._subscriber.send("SUBSCRIBE", *channels)

    async def _connection(self) -> None:
        """Keep one subscribed connection: after a loss, connect again, subscribe every
        channel listened to, and once Redis confirms, every listener re-reads its stream
        (what was published while we were away is in the streams only)."""
        failures, lost_one = 0, False
        while not self._closing:
            try:
                subscriber = await connect(
                    self.client,
                    name=self.connection_name,
                    on_message=self._on_message,
                    on_subscribed=self._on_subscribed,
                )
            except (RedisError, OSError, TimeoutError) as exc:
                metrics.TOKENHUB_CONNECTED.set(0)
                if failures % 20 == 0:  # once when it starts, then every ~10 s
                    log.warning("token hub cannot reach Redis: %s", exc)
                failures += 1
                self._resync_all()
                await asyncio.sleep(0.5)
                continue
            if failures or lost_one:
                metrics.TOKENHUB_RECONNECTS.inc()
            if failures:
                log.info("token hub reached Redis again")
                failures = 0
            metrics.TOKENHUB_CONNECTED.set(1)
            self._subscriber = subscriber
            self._unanswered.clear()
            # The control channel last: its confirmation comes after all the others'.
            self._send_subscribe([*self._generation_of, self._control])
            while not subscriber.lost.done():  # its own loop: a stuck heartbeat can't stop it
                await asyncio.wait([subscriber.lost], timeout=KEEP_ALIVE_EVERY_S)
                subscriber.keep_alive()
            self._subscriber = None
            metrics.TOKENHUB_CONNECTED.set(0)
            lost_one = True
            if not self._closing:
                log.warning("token hub lost its Redis connection")
                self._resync_all()
                await asyncio.sleep(0.5)

    def _on_subscribed(self, channel: bytes) -> None:
        left = self._unanswered.get(channel, 1) - 1
        if left > 0:
            self._unanswered[channel] = left
            return
        self._unanswered.pop(channel, None)
        if channel == self._control:
            self._resync_all()  # the connection is (again) subscribed to every channel
        elif (confirmed := self._confirmed.get(channel)) is not None:
            confirmed.set()

    def _on_message(self, channel: bytes, data: bytes) -> None:
        generation_id = self._generation_of.get(channel)
        if generation_id is None:
            return  # the control channel, or one just left
        event = parse_live(data)
        self._last_event[generation_id] = time.monotonic()
        for subscription in self._listeners.get(generation_id, ()):
            subscription.put(event)

    def _resync_all(self) -> None:
        for subs in self._listeners.values():
            for subscription in subs:
                subscription.put(RESYNC)

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
                subscription.put(RESYNC)
