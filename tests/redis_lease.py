"""A Redis database of one test run alone, on the machine's Redis.

The job queue, the token bus and the worker heartbeats all live in that database, so two
test suites on one machine (two clones, two developers) never take each other's jobs.
"""

from __future__ import annotations

import atexit
import os

import redis

REDIS_SERVER = "redis://127.0.0.1:6379"
LEASE_KEY = "chatbot:test-lease:{}"
LEASE_S = 4 * 3600  # a run killed before atexit frees its database after this


def _holder_gone(admin: redis.Redis, key: str) -> bool:
    """The lease's process ended without freeing it (killed): it may be taken over."""
    holder = admin.get(key)
    if holder is None:  # freed meanwhile
        return bool(admin.set(key, os.getpid(), nx=True, ex=LEASE_S))
    if not holder.isdigit():
        return False
    try:
        os.kill(int(holder), 0)
    except ProcessLookupError:
        # Take it over only if nobody else did meanwhile.
        return bool(admin.set(key, os.getpid(), xx=True, ex=LEASE_S, get=True) == holder)
    except PermissionError:
        return False
    return False


def lease_redis_db() -> str:
    """Lease a free database 1-15 for this process's lifetime; returns its URL."""
    admin = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    for db in range(1, 16):
        key = LEASE_KEY.format(db)
        if admin.set(key, os.getpid(), nx=True, ex=LEASE_S) or _holder_gone(admin, key):
            redis.Redis.from_url(f"{REDIS_SERVER}/{db}").flushdb()
            atexit.register(admin.delete, LEASE_KEY.format(db))
            return f"{REDIS_SERVER}/{db}"
    raise RuntimeError("every Redis database 1-15 is leased by another test run")
