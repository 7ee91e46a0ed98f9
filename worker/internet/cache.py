"""Redis cache of search results and extracted pages, as JSON with a TTL.

Keys: ``<namespace>:search:<sha256 of the query parameters>`` and
``<namespace>:page:<sha256 of the URL>``. A Redis failure is logged and treated as a
miss: the cache must never be the reason an answer fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "chatbot:web"


class WebCache:
    """Search results and pages cached in Redis for ``ttl_s`` seconds (0 turns it off)."""

    def __init__(
        self, client: redis.Redis, *, ttl_s: int, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._namespace = namespace

    @property
    def enabled(self) -> bool:
        """Whether anything is read or written."""
        return self._ttl_s > 0

    def search_key(self, params: Mapping[str, Any]) -> str:
        """The key of a search, from its parameters (never the API key)."""
        canonical = json.dumps(
            {key: value for key, value in params.items() if key != "api_key"},
            sort_keys=True,
            ensure_ascii=False,
        ).casefold()
        return f"{self._namespace}:search:{_sha256(canonical)}"

    def page_key(self, url: str) -> str:
        """The key of a page, from its URL as requested."""
        return f"{self._namespace}:page:{_sha256(url)}"

    def get_search(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The cached search for ``params``, or None."""
        if not self.enabled:
            return None
        return self._get_many([self.search_key(params)])[0]

    def put_search(self, params: Mapping[str, Any], value: Mapping[str, Any]) -> None:
        """Cache a search result (a JSON-ready mapping)."""
        self._put_many({self.search_key(params): value})

    def get_pages(self, urls: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The cached pages among ``urls``, by URL, in one round trip."""
        if not self.enabled or not urls:
            return {}
        values = self._get_many([self.page_key(url) for url in urls])
        return {url: value for url, value in zip(urls, values, strict=True) if value is not None}

    def put_pages(self, pages: Mapping[str, Mapping[str, Any]]) -> None:
        """Cache pages (JSON-ready mappings) by URL, in one round trip."""
        self._put_many({self.page_key(url): value for url, value in pages.items()})

    def _get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        try:
            raw_values = self._redis.mget(keys)
        except redis.RedisError:
            log.warning("web cache read failed", exc_info=True)
            return [None] * len(keys)
        values: list[dict[str, Any] | None] = []
        for raw in raw_values:
            value = None
            if raw is not None:
                try:
                    decoded = json.loads(raw)
                except (TypeError, ValueError):
                    decoded = None
                value = decoded if isinstance(decoded, dict) else None
            values.append(value)
        return values

    def _put_many(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        if not self.enabled or not items:
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, json.dumps(value, ensure_ascii=False), ex=self._ttl_s)
                pipe.execute()
        except redis.RedisError:
            log.warning("web cache write failed", exc_info=True)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
