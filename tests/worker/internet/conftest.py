"""Fixtures of the internet pipeline tests: local servers, settings, and Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from internet_fakes import TEST_API_KEY, FakeSerpApi, LocalServer

from shared.settings import Settings


@pytest.fixture
def web() -> Iterator[LocalServer]:
    """A local web server for pages."""
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture
def serpapi_fake() -> Iterator[FakeSerpApi]:
    """A local fake of SerpApi."""
    server = FakeSerpApi()
    yield server
    server.close()


@pytest.fixture
def make_settings(serpapi_fake: FakeSerpApi) -> Callable[..., Settings]:
    """Settings pointing at the fake SerpApi, with short timeouts; keywords override."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "serpapi_api_key": TEST_API_KEY,
            "serpapi_base_url": serpapi_fake.url(""),
            "fetch_allow_private": True,
            "fetch_timeout_s": 1.0,
            "fetch_total_timeout_s": 3.0,
            "web_cache_ttl_s": 60,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The real local Redis, this test run's database."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    client.close()


@pytest.fixture
def cache_namespace(redis_client: redis.Redis) -> Iterator[str]:
    """A key namespace of this test alone, deleted afterwards."""
    namespace = f"test:web:{uuid.uuid4().hex}"
    yield namespace
    keys = list(redis_client.scan_iter(match=f"{namespace}:*"))
    if keys:
        redis_client.delete(*keys)
