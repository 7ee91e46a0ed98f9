"""The worker registry: which worker processes are alive, which generation each one runs,
and why none can answer.

Each worker process with a loaded model beats every ``WORKER_HEARTBEAT_S`` seconds into a
sorted set (score: the time of its last beat). The same beat refreshes the ``owner`` key
of the generation the process is running, so a Redis that restarts empty learns the
owners back within one beat. A process that stops beating (SIGKILL, host gone) is dead
once its last beat is ``WORKER_STALE_S`` old.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import time
from typing import Any

import redis
import redis.asyncio as aioredis

WORKERS_KEY = "chatbot:workers"
MODEL_ERROR_KEY = "chatbot:workers:model_error"
WORKER_HEARTBEAT_S = 2.0
WORKER_STALE_S = 10.0


def owner_key(generation_id: str) -> str:
    return f"chatbot:gen:{{{generation_id}}}:owner"


def this_process_id() -> str:
    """The id a worker process registers under: ``<host>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def heartbeat(
    client: redis.Redis,
    *,
    worker_id: str,
    info: dict[str, Any],
    generation_id: str | None,
    owner_ttl_s: int,
) -> None:
    """A worker process with a loaded model says it is alive (and what it runs)."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(WORKERS_KEY, {worker_id: now})
        pipe.hset(f"{WORKERS_KEY}:info", worker_id, json.dumps(info))
        pipe.zremrangebyscore(WORKERS_KEY, "-inf", now - 10 * WORKER_STALE_S)
        if generation_id is not None:
            pipe.set(owner_key(generation_id), worker_id, ex=owner_ttl_s)
        pipe.execute()


def gone(client: redis.Redis, *, worker_id: str) -> None:
    """A worker process leaves cleanly (warm shutdown)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.zrem(WORKERS_KEY, worker_id)
        pipe.hdel(f"{WORKERS_KEY}:info", worker_id)
        pipe.execute()


def claim_ownership(client: redis.Redis, generation_id: str, *, worker_id: str, ttl_s: int) -> None:
    """Record which worker process runs a generation, so a vanished one can be noticed."""
    client.set(owner_key(generation_id), worker_id, ex=ttl_s)


class Owner(enum.StrEnum):
    """What the registry says about the process running a generation."""

    ALIVE = "alive"
    DEAD = "dead"  # its last beat is stale, or it is a process of this host that is gone
    UNKNOWN = "unknown"  # no owner recorded, or its beats are missing (Redis restarted)


def owner_state(client: redis.Redis, generation_id: str, *, same_host: bool = False) -> Owner:
    """Whether the worker process that runs ``generation_id`` is alive.

    ``same_host``: the caller is a worker process beside the owner (under one Celery
    parent), so a missing process id is proof of death without waiting for stale beats.
    """
    owner = client.get(owner_key(generation_id))
    if owner is None:
        return Owner.UNKNOWN
    worker_id = _text(owner)
    if same_host and process_gone(worker_id):
        return Owner.DEAD
    beat = client.zscore(WORKERS_KEY, worker_id)
    if beat is None:
        return Owner.UNKNOWN
    return Owner.DEAD if beat < time.time() - WORKER_STALE_S else Owner.ALIVE


def process_gone(worker_id: str) -> bool:
    """True when ``worker_id`` names a process of this host that no longer exists (a
    killed prefork child whose job came back at once), without waiting for stale beats."""
    host, _, pid = worker_id.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def live_count(client: redis.Redis) -> int:
    """Worker processes with a loaded model that beat within ``WORKER_STALE_S``."""
    return int(client.zcount(WORKERS_KEY, time.time() - WORKER_STALE_S, "+inf"))


async def live_workers(client: aioredis.Redis) -> list[str]:
    """Worker processes that have a model loaded and beat within ``WORKER_STALE_S``."""
    members = await client.zrangebyscore(WORKERS_KEY, time.time() - WORKER_STALE_S, "+inf")
    return [_text(m) for m in members if isinstance(m, (bytes, str))]


async def model_error(client: aioredis.Redis) -> str | None:
    """Why the workers could not load the model, if one said so recently."""
    value = await client.get(MODEL_ERROR_KEY)
    return None if value is None else _text(value)


async def live_models(client: aioredis.Redis) -> list[str]:
    """The models the live worker processes have loaded (from their beats), sorted."""
    workers = await live_workers(client)
    if not workers:
        return []
    models = set()
    for raw in await client.hmget(f"{WORKERS_KEY}:info", workers):
        if raw is None:
            continue
        try:
            name = json.loads(_text(raw)).get("model")
        except (ValueError, AttributeError):
            continue
        if name:
            models.add(str(name))
    return sorted(models)
