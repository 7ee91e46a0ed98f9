"""Fixtures of the web tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import redis

from web.sse import stream_generation
from web.tokenhub import TokenHub


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    """A synchronous client of the test run's Redis database (as workers write to it)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    client.close()


async def collect_stream(
    hub: TokenHub, gid: str, *, after: str | None = None, keepalive_s: float = 0.5
) -> list[bytes]:
    """Every SSE chunk of one generation's stream through ``hub``, to its terminal event."""
    return [
        chunk
        async for chunk in stream_generation(
            redis=hub.client,
            hub=hub,
            generation_id=gid,
            after=after,
            keepalive_s=keepalive_s,
            shutting_down=asyncio.Event(),
        )
    ]
