"""The token bus: how generated tokens travel from workers to every web process.

Each generation has a Redis Stream (the replay log) and a pub/sub channel (live delivery).
A worker appends every event with one Lua call that does ``XADD`` and ``PUBLISH`` together,
so a reader that subscribes first and then replays the stream misses nothing: any entry
not yet in the stream when it read is published after it subscribed. The same call reads
the generation's cancel flag and listener heartbeat, so a worker learns it should stop
without a second round trip.

Keys (all under one hash tag per generation, so the Lua call is cluster-safe):
- ``chatbot:gen:{<id>}:events``   Stream of events, fields ``t`` (type) and ``d`` (data).
- ``chatbot:gen:{<id>}:live``     pub/sub channel, payload ``<entry id>\\n<type>\\n<data>``.
- ``chatbot:gen:{<id>}:cancel``   set by ``POST /conversations/stop``.
- ``chatbot:gen:{<id>}:seen``     refreshed by web processes while clients listen;
                                  it expires ``STREAM_GRACE_S`` after the last one left.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio as aioredis

EventType = Literal["generation", "sources", "token", "restart", "done", "error"]
TERMINAL: frozenset[str] = frozenset({"done", "error"})
STREAM_MAXLEN = 20_000
WORKERS_KEY = "chatbot:workers"
MODEL_ERROR_KEY = "chatbot:workers:model_error"
WORKER_HEARTBEAT_S = 2.0
WORKER_STALE_S = 10.0


def events_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:events"


def live_channel(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:live"


def cancel_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:cancel"


def seen_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:seen"


def owner_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:owner"


def generation_from_channel(channel: str) -> str:
    return channel.split("{", 1)[1].split("}", 1)[0]


# KEYS: events, live, cancel, seen. ARGV: type, data, maxlen, ttl, check_seen (0/1).
# Returns {entry id, flag}: flag is "cancel", "abandoned" or "".
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
local flag = ''
if redis.call('EXISTS', KEYS[3]) == 1 then
  flag = 'cancel'
elseif ARGV[5] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then
  flag = 'abandoned'
end
return {id, flag}
"""


@dataclass(frozen=True)
class Event:
    """One entry of a generation's stream."""

    entry_id: str
    type: str
    data: str

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL

    def json(self) -> Any:
        return json.loads(self.data)


def entry_key(entry_id: str) -> tuple[int, int]:
    """Stream entry ids compare as (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def parse_entries(raw: list[Any]) -> list[Event]:
    events = []
    for entry_id, fields in raw:
        fields = {_text(k): _text(v) for k, v in fields.items()}
        events.append(Event(_text(entry_id), fields.get("t", ""), fields.get("d", "")))
    return events


def parse_live(payload: bytes | str) -> Event:
    entry_id, kind, data = _text(payload).split("\n", 2)
    return Event(entry_id, kind, data)


def encode(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


class TokenWriter:
    """Appends a generation's events (used by workers; synchronous)."""

    def __init__(
        self, client: redis.Redis, generation_id: str, *, ttl_s: int, check_listeners: bool
    ) -> None:
        self.client = client
        self.generation_id = generation_id
        self.ttl_s = ttl_s
        self.check_listeners = check_listeners
        self._script = client.register_script(_APPEND)
        self._keys = [
            events_key(generation_id),
            live_channel(generation_id),
            cancel_key(generation_id),
            seen_key(generation_id),
        ]

    def append(self, kind: EventType, data: Any = "") -> tuple[str, str]:
        """Append one event; returns its entry id and a stop flag ("cancel", "abandoned", "")."""
        args: list[str | int] = [
            kind,
            encode(data),
            STREAM_MAXLEN,
            self.ttl_s,
            int(self.check_listeners),
        ]
        entry_id, flag = self._script(keys=self._keys, args=args)
        return _text(entry_id), _text(flag)

    def has_tokens(self) -> bool:
        """Whether an earlier attempt already streamed tokens (so clients must restart)."""
        entries = parse_entries(list(self.client.xrevrange(self._keys[0], count=50) or []))
        return any(event.type == "token" for event in entries)

    def stop_requested(self) -> str:
        """The stop flag without appending anything."""
        if self.client.exists(self._keys[2]):
            return "cancel"
        if self.check_listeners and not self.client.exists(self._keys[3]):
            return "abandoned"
        return ""


class AsyncTokenWriter:
    """Appends events from the web tier (terminal events for jobs no worker ran)."""

    def __init__(self, client: aioredis.Redis, generation_id: str, *, ttl_s: int) -> None:
        self._script = client.register_script(_APPEND)
        self.ttl_s = ttl_s
        self._keys = [
            events_key(generation_id),
            live_channel(generation_id),
            cancel_key(generation_id),
            seen_key(generation_id),
        ]

    async def append(self, kind: EventType, data: Any = "") -> str:
        result = await self._script(
            keys=self._keys, args=[kind, encode(data), STREAM_MAXLEN, self.ttl_s, 0]
        )
        return _text(result[0])


async def read_events(
    client: aioredis.Redis, generation_id: str, *, after: str | None = None
) -> list[Event]:
    """Everything in the stream after entry ``after`` (or from the start)."""
    start = f"({after}" if after else "-"
    raw = await client.xrange(events_key(generation_id), min=start, max="+")
    return parse_entries(list(raw or []))


async def request_cancel(client: aioredis.Redis, generation_id: str, *, ttl_s: int) -> None:
    await client.set(cancel_key(generation_id), "1", ex=ttl_s)


async def mark_seen(client: aioredis.Redis, generation_ids: list[str], *, grace_s: float) -> None:
    """Tell workers these generations have listeners, for ``grace_s`` more seconds."""
    if not generation_ids:
        return
    px = max(int(grace_s * 1000), 1000)
    async with client.pipeline(transaction=False) as pipe:
        for generation_id in generation_ids:
            pipe.set(seen_key(generation_id), "1", px=px)
        await pipe.execute()


def worker_heartbeat(client: redis.Redis, *, worker_id: str, info: dict[str, Any]) -> None:
    """A worker process with a loaded model says it is alive."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(WORKERS_KEY, {worker_id: now})
        pipe.hset(f"{WORKERS_KEY}:info", worker_id, json.dumps(info))
        pipe.zremrangebyscore(WORKERS_KEY, "-inf", now - 10 * WORKER_STALE_S)
        pipe.execute()


def claim_ownership(client: redis.Redis, generation_id: str, *, worker_id: str, ttl_s: int) -> None:
    """Record which worker process runs a generation, so a vanished one can be noticed."""
    client.set(owner_key(generation_id), worker_id, ex=ttl_s)


async def owner_vanished(client: aioredis.Redis, generation_id: str) -> bool:
    """True when the worker process running this generation stopped beating."""
    owner = await client.get(owner_key(generation_id))
    if owner is None:
        return False
    beat = await client.zscore(WORKERS_KEY, _text(owner))
    return beat is None or beat < time.time() - WORKER_STALE_S


def worker_gone(client: redis.Redis, *, worker_id: str) -> None:
    with client.pipeline(transaction=False) as pipe:
        pipe.zrem(WORKERS_KEY, worker_id)
        pipe.hdel(f"{WORKERS_KEY}:info", worker_id)
        pipe.execute()


async def live_workers(client: aioredis.Redis) -> list[str]:
    """Worker processes that have a model loaded and beat within ``WORKER_STALE_S``."""
    members = await client.zrangebyscore(WORKERS_KEY, time.time() - WORKER_STALE_S, "+inf")
    return [_text(m) for m in members if isinstance(m, (bytes, str))]


async def live_worker_models(client: aioredis.Redis) -> list[str]:
    """The models the live workers have loaded (from their heartbeats), sorted."""
    workers = await live_workers(client)
    if not workers:
        return []
    infos = await client.hmget(f"{WORKERS_KEY}:info", workers)
    models = set()
    for raw in infos:
        if raw is None:
            continue
        with contextlib.suppress(ValueError, AttributeError):
            if name := json.loads(_text(raw)).get("model"):
                models.add(str(name))
    return sorted(models)
