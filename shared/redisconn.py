"""Redis clients for both tiers, with Heroku's self-signed ``rediss://`` handled."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from shared.settings import Settings

#: A command that meets a dropped connection (Redis restarted, a failover) reconnects and
#: tries again a few times before it fails, so one stale connection is never an outage.
RETRIES = 3


def _options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "retry_on_error": [ConnectionError, TimeoutError],
    }
    if settings.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = settings.redis_ssl_cert_reqs
    return options


def web_pool_sizes(settings: Settings) -> tuple[int, int]:
    """How a web process splits ``REDIS_MAX_CONNECTIONS``: (async pool, sync pool). The
    sync pool serves the life cycle in the thread pool; the async one, the streams."""
    sync = max(2, settings.redis_max_connections // 4)
    return settings.redis_max_connections - sync, sync


def sync_client(settings: Settings, *, max_connections: int | None = None) -> redis.Redis:
    """A synchronous client; ``max_connections`` bounds its pool (callers then *wait* for a
    free connection), for the web tier's thread pool."""
    retry = redis.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES)
    if max_connections is None:
        return redis.Redis.from_url(settings.redis_url, retry=retry, **_options(settings))
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections,
        timeout=10,
        retry=retry,
        **_options(settings),
    )
    return redis.Redis.from_pool(pool)


def async_client(settings: Settings) -> aioredis.Redis:
    """The web process's client. Its pool is bounded and *waits* for a free connection, so a
    burst of thousands of streams queues for a few connections instead of failing."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=web_pool_sizes(settings)[0],
        timeout=10,
        retry=aioredis.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
        **_options(settings),
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
