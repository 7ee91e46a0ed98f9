"""Per-tenant limits: how many generations a tenant may start per minute."""

from __future__ import annotations

import hashlib
import time

from redis.asyncio import Redis

from shared.errors import TooManyRequests
from shared.settings import Settings

WINDOW_S = 60


def _counter_key(tenant: str, window: int) -> str:
    # Hash the name: keys stay short and free of whatever characters a name holds.
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:16]
    return f"chatbot:ratelimit:starts:{digest}:{window}"


async def check_start_rate(redis: Redis, tenant: str, settings: Settings) -> None:
    """Count one generation start for ``tenant``; raise 429 (with Retry-After) past
    ``GENERATION_STARTS_PER_MINUTE`` in the current minute. A fixed window in Redis,
    so every web process shares the count. Without API keys there is one tenant for
    every user, so no per-key limit (``MAX_QUEUED`` still bounds the queue)."""
    limit = settings.generation_starts_per_minute
    if limit <= 0 or not settings.api_keys.strip():
        return
    now = time.time()
    window = int(now // WINDOW_S)
    key = _counter_key(tenant, window)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, WINDOW_S * 2)
        count, _ = await pipe.execute()
    if int(count) > limit:
        retry_after = max(1, int((window + 1) * WINDOW_S - now) + 1)
        raise TooManyRequests(
            f"this API key started {limit} generations this minute, the most allowed "
            f"(GENERATION_STARTS_PER_MINUTE); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
