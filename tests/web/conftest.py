"""Fixtures of the web tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    """A synchronous client of the test run's Redis database (as workers write to it)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    client.close()
