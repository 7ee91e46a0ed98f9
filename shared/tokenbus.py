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

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis
import redis.asyncio as aioredis

EventType = Literal["generation", "queue", "sources", "token", "restart", "done", "error"]
TERMINAL: frozenset[str] = frozenset({"done", "error"})
STREAM_MAXLEN = 20_000


def events_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:events"


def live_channel(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:live"


def cancel_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:cancel"


def seen_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:seen"


def sent_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:sent"


def _keys(generation_id: str) -> list[str]:
    """The keys of the append script, in its order."""
    return [
        events_key(generation_id),
        live_channel(generation_id),
        cancel_key(generation_id),
        seen_key(generation_id),
        sent_key(generation_id),
    ]


def generation_from_channel(channel: str) -> str:
    return channel.split("{", 1)[1].split("}", 1)[0]


# KEYS: events, live, cancel, seen, sent. ARGV: type, data, maxlen, ttl, check_seen (0/1),
# batch mark ("" or "<sender>:<n>"). Returns {entry id, flag}: flag is "cancelled",
# "abandoned" or "". A batch whose mark equals the last one appended was appended by an
# earlier try whose reply was lost: it is not appended twice (entry id ""). ARGV[7] is the
# sender's previous mark: when the stored one is neither, Redis lost what was appended
# before (it restarted empty): nothing is appended and the entry id is "lost".
_APPEND = """
local flag = ''
if redis.call('EXISTS', KEYS[3]) == 1 then
  flag = 'cancelled'
elseif ARGV[5] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then
  flag = 'abandoned'
end
if ARGV[6] ~= '' then
  local last = redis.call('GET', KEYS[5])
  if last == ARGV[6] then
    return {'', flag}
  end
  if ARGV[7] ~= '' and last ~= ARGV[7] then
    return {'lost', flag}
  end
  redis.call('SET', KEYS[5], ARGV[6], 'EX', ARGV[4])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
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


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def parse_entries(raw: list[Any]) -> list[Event]:
    events = []
    for entry_id, fields in raw:
        fields = {as_text(k): as_text(v) for k, v in fields.items()}
        events.append(Event(as_text(entry_id), fields.get("t", ""), fields.get("d", "")))
    return events


def parse_live(payload: bytes | str) -> Event:
    entry_id, kind, data = as_text(payload).split("\n", 2)
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
        self._keys = _keys(generation_id)

    def append(
        self, kind: EventType, data: Any = "", *, mark: str = "", previous: str = ""
    ) -> tuple[str, str]:
        """Append one event; returns its entry id and a stop flag ("cancelled", "abandoned", "").

        ``mark`` (unique per sender and batch) makes a retry after a lost reply safe: the
        event is appended once, and the retry gets entry id "". ``previous`` (the sender's
        last mark) detects a Redis that lost the earlier batches: entry id "lost".
        """
        args: list[str | int] = [
            kind,
            encode(data),
            STREAM_MAXLEN,
            self.ttl_s,
            int(self.check_listeners),
            mark,
            previous,
        ]
        entry_id, flag = self._script(keys=self._keys, args=args)
        return as_text(entry_id), as_text(flag)

    def stop_requested(self) -> str:
        """The stop flag without appending anything (one round trip)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self._keys[2])
            pipe.exists(self._keys[3])
            cancelled, seen = pipe.execute()
        if cancelled:
            return "cancelled"
        if self.check_listeners and not seen:
            return "abandoned"
        return ""


async def read_events(
    client: aioredis.Redis, generation_id: str, *, after: str | None = None
) -> list[Event]:
    """Everything in the stream after entry ``after`` (or from the start)."""
    start = f"({after}" if after else "-"
    raw = await client.xrange(events_key(generation_id), min=start, max="+")
    return parse_entries(list(raw or []))


def append(
    client: redis.Redis, generation_id: str, kind: EventType, data: Any, *, ttl_s: int
) -> str:
    """Append one event outside a worker's token loop (life-cycle events); its entry id."""
    script = client.register_script(_APPEND)
    args: list[str | int] = [kind, encode(data), STREAM_MAXLEN, ttl_s, 0, "", ""]
    entry_id, _ = script(keys=_keys(generation_id), args=args)
    return as_text(entry_id)


def append_queued(
    pipe: redis.client.Pipeline,
    generation_id: str,
    kind: EventType,
    data: Any,
    *,
    ttl_s: int,
    check_listeners: bool = False,
) -> None:
    """``append`` as one more command of the caller's pipeline (its reply: [entry id, flag];
    ``check_listeners``: the flag also says "abandoned"). The script travels whole
    (``EVAL``): a pipeline never meets a missing script."""
    args: list[str | int] = [kind, encode(data), STREAM_MAXLEN, ttl_s, int(check_listeners)]
    args += ["", ""]
    pipe.eval(_APPEND, len(_keys(generation_id)), *_keys(generation_id), *args)


def events(client: redis.Redis, generation_id: str, *, after: str | None = None) -> list[Event]:
    """``read_events`` for synchronous callers."""
    start = f"({after}" if after else "-"
    return parse_entries(list(client.xrange(events_key(generation_id), min=start, max="+") or []))


def request_cancel(client: redis.Redis, generation_id: str, *, ttl_s: int) -> None:
    """Raise the cancel flag the worker reads with every token."""
    client.set(cancel_key(generation_id), "1", ex=ttl_s)


def seen_pairs(generation_ids: list[str], *, grace_s: float) -> list[tuple[str, int]]:
    """``(key, px)`` pairs that tell workers these generations have listeners."""
    px = max(int(grace_s * 1000), 1000)
    return [(seen_key(generation_id), px) for generation_id in generation_ids]


def mark_seen(client: redis.Redis, generation_ids: list[str], *, grace_s: float) -> None:
    """Tell workers these generations have listeners, for ``grace_s`` more seconds."""
    if not generation_ids:
        return
    with client.pipeline(transaction=False) as pipe:
        mark_seen_queued(pipe, generation_ids, grace_s=grace_s)
        pipe.execute()


def mark_seen_queued(
    pipe: redis.client.Pipeline, generation_ids: list[str], *, grace_s: float
) -> None:
    """``mark_seen`` as commands of the caller's pipeline."""
    for key, px in seen_pairs(generation_ids, grace_s=grace_s):
        pipe.set(key, "1", px=px)


def has_listeners(client: redis.Redis, generation_id: str) -> bool:
    return bool(client.exists(seen_key(generation_id)))


def partial_text(events: list[Event]) -> str:
    """The text of the latest attempt in a stream: the tokens after its last ``generation``
    or ``restart`` event."""
    pieces: list[str] = []
    for event in events:
        if event.type in ("generation", "restart"):
            pieces.clear()
        elif event.type == "token":
            pieces.append(event.data)
    return "".join(pieces)
