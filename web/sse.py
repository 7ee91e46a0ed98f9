"""Server-Sent Events: turning a generation's event stream into SSE frames.

A reader subscribes to the live channel first, then replays the Redis Stream, then
follows live events, dropping any it already sent (entry ids only grow). Tokens that are
already waiting are sent as one event, so a lagging client catches up in few writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.tokenbus import Event, entry_key, read_events
from web import metrics
from web.tokenhub import RESYNC, TokenHub

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"
#: How long a stream waits for a lost Redis before it ends with an ``error`` event.
REDIS_PATIENCE_S = 30.0
SHUTDOWN_ERROR = {
    "code": "server_shutdown",
    "message": "the server is restarting: reconnect to resume the stream",
}


def frame(data: str, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE event; data with newlines becomes several ``data:`` lines, as SSE requires."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.replace("\r\n", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


_ENTRY_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")


def parse_last_event_id(value: str | None) -> tuple[uuid.UUID, str] | None:
    """``<generation id>:<stream entry id>`` or None when absent or not ours."""
    if not value:
        return None
    generation, _, entry = value.strip().partition(":")
    if not _ENTRY_ID.fullmatch(entry):
        return None
    try:
        generation_id = uuid.UUID(generation)
    except ValueError:
        return None
    if max(entry_key(entry)) >= 2**64:
        return None  # not a Redis stream id: Redis would refuse it
    return generation_id, entry


# No id: a client that reconnects resumes after the last real event.
SHUTDOWN = frame(json.dumps({"error": SHUTDOWN_ERROR}), event="error")
REDIS_LOST = frame(
    json.dumps(
        {
            "error": {
                "code": "unavailable",
                "message": "the server lost Redis: reconnect to resume the stream",
            }
        }
    ),
    event="error",
)


def _render(generation_id: str, events: list[Event]) -> list[bytes]:
    """SSE frames for a batch of events, with consecutive tokens merged into one."""
    frames: list[bytes] = []
    tokens: list[str] = []
    last_token_id = ""

    def flush() -> None:
        if tokens:
            frames.append(frame("".join(tokens), event_id=f"{generation_id}:{last_token_id}"))
            metrics.TOKEN_EVENTS.inc()
            tokens.clear()

    for event in events:
        if event.type == "token":
            tokens.append(event.data)
            last_token_id = event.entry_id
            continue
        flush()
        frames.append(
            frame(event.data, event=event.type, event_id=f"{generation_id}:{event.entry_id}")
        )
        metrics.STREAM_EVENTS.labels(event.type).inc()
    flush()
    return frames


class Signal(enum.Enum):
    """What ``follow_generation`` yields besides batches of events."""

    KEEPALIVE = "keepalive"  # the stream was quiet for ``keepalive_s``
    SHUTDOWN = "shutdown"  # the server is stopping: end the response now
    REDIS_LOST = "redis_lost"  # Redis stayed away: end the response now


async def follow_generation(
    *,
    redis: Redis,
    hub: TokenHub,
    generation_id: str,
    after: str | None,
    keepalive_s: float,
    shutting_down: asyncio.Event,
) -> AsyncGenerator[list[Event] | Signal, None]:
    """One generation's events from just after entry ``after`` to its terminal event, in
    order and each once, as batches (what was waiting comes together), with ``Signal``s in
    between. Every response format (this module's SSE, the OpenAI API's chunks) reads it."""
    metrics.ACTIVE_STREAMS.inc()

    async def replay(after: str | None) -> list[Event]:
        # Redis away (restarting, failing over): wait for it, keeping the client connected.
        deadline = asyncio.get_running_loop().time() + REDIS_PATIENCE_S
        while True:
            try:
                return await read_events(redis, generation_id, after=after)
            except RedisError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(1.0)

    # One watcher per stream (not a task per event): shutdown wakes the wait below.
    watcher = asyncio.ensure_future(shutting_down.wait())
    try:
        async with hub.subscribe(generation_id) as subscription:
            watcher.add_done_callback(lambda _: subscription.wake())
            last = after
            pending = await replay(last)
            while True:
                if pending:
                    unique = {e.entry_id: e for e in pending}.values()
                    fresh = sorted(
                        (
                            e
                            for e in unique
                            if last is None or entry_key(e.entry_id) > entry_key(last)
                        ),
                        key=lambda e: entry_key(e.entry_id),
                    )
                    if fresh:
                        yield fresh
                        last = fresh[-1].entry_id
                        if any(e.terminal for e in fresh):
                            return
                    pending = []
                if shutting_down.is_set():
                    yield Signal.SHUTDOWN
                    return
                await subscription.wait(keepalive_s)
                if not subscription.items:
                    if not shutting_down.is_set():
                        yield Signal.KEEPALIVE
                    continue
                # Everything waiting, as one batch; any number of RESYNCs is one re-read.
                resync = False
                while subscription.items:
                    item = subscription.items.popleft()
                    if item is RESYNC:
                        resync = True
                    else:
                        pending.append(item)
                if resync:
                    pending += await replay(last)
    except RedisError as exc:
        # Headers are sent: the caller ends the stream with an event, not a broken body.
        log.error("stream %s lost Redis: %s", generation_id, exc)
        yield Signal.REDIS_LOST
    finally:
        watcher.cancel()
        metrics.ACTIVE_STREAMS.dec()


SIGNAL_FRAMES = {
    Signal.KEEPALIVE: KEEPALIVE,
    Signal.SHUTDOWN: SHUTDOWN,
    Signal.REDIS_LOST: REDIS_LOST,
}


async def stream_generation(
    *,
    redis: Redis,
    hub: TokenHub,
    generation_id: str,
    after: str | None,
    keepalive_s: float,
    shutting_down: asyncio.Event,
) -> AsyncIterator[bytes]:
    """SSE bytes of one generation from just after entry ``after`` to its terminal event."""
    events = follow_generation(
        redis=redis,
        hub=hub,
        generation_id=generation_id,
        after=after,
        keepalive_s=keepalive_s,
        shutting_down=shutting_down,
    )
    async with contextlib.aclosing(events):  # closing this stream closes the subscription
        async for item in events:
            if isinstance(item, Signal):
                yield SIGNAL_FRAMES[item]
            else:
                for chunk in _render(generation_id, item):
                    yield chunk
