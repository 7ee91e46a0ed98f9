"""Web search through SerpApi, parsed into hits and facts the rest of the pipeline can use.

The ``serpapi`` client builds its URLs from the class attribute ``HTTPClient.BASE_DOMAIN``
(``"https://serpapi.com"`` + ``"/search"``); :func:`make_client` sets that attribute on the
instance so ``settings.serpapi_base_url`` (a local fake in tests) is honoured without
forking the client.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import requests
import serpapi

from shared.settings import Settings

log = logging.getLogger(__name__)

SEARCH_TIMEOUT_S = 10.0
"""Connect and read timeout of one SerpApi call (there is no setting for it yet)."""

_NO_RESULTS_MARKER = "hasn't returned any results"

SearchErrorCode = Literal[
    "search_unavailable", "search_auth", "search_quota", "search_timeout", "search_failed"
]


class SearchError(Exception):
    """The web search failed; ``reason`` says why in words fit for the user.

    ``code`` is a stable machine-readable kind, ``status`` the HTTP status when there was
    one. The message never contains the API key.
    """

    def __init__(
        self, reason: str, *, code: SearchErrorCode = "search_failed", status: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code: SearchErrorCode = code
        self.status = status


class SearchNotConfigured(SearchError):
    """Search is not configured (no SerpApi key)."""

    def __init__(self, reason: str = "web search is not configured (no SerpApi key)") -> None:
        super().__init__(reason, code="search_unavailable")


@dataclass(frozen=True)
class SearchHit:
    """One organic result: ``position`` is SerpApi's 1-based rank."""

    position: int
    title: str
    url: str
    snippet: str


@dataclass(frozen=True)
class SearchFact:
    """Evidence the search page itself gives: an answer box or a knowledge-graph panel."""

    kind: Literal["answer_box", "knowledge_graph"]
    title: str
    url: str
    text: str


@dataclass(frozen=True)
class SearchResult:
    """What one search found, in SerpApi's rank order."""

    query: str
    hits: list[SearchHit] = field(default_factory=list)
    facts: list[SearchFact] = field(default_factory=list)
    search_url: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the cache stores this)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchResult:
        """The inverse of :meth:`to_json`."""
        return cls(
            query=str(data["query"]),
            hits=[SearchHit(**hit) for hit in data.get("hits", [])],
            facts=[SearchFact(**fact) for fact in data.get("facts", [])],
            search_url=str(data.get("search_url", "")),
        )


def search_params(question: str, *, settings: Settings) -> dict[str, str | int]:
    """The SerpApi query parameters for ``question``, without the API key."""
    return {
        "engine": settings.search_engine,
        "q": " ".join(question.split()),
        "num": settings.search_results,
        "hl": settings.search_locale,
        "gl": settings.search_country,
    }


def make_client(*, settings: Settings, timeout_s: float = SEARCH_TIMEOUT_S) -> serpapi.Client:
    """A ``serpapi.Client`` that talks to ``settings.serpapi_base_url``.

    Raises :class:`SearchNotConfigured` when no key is configured.
    """
    if not settings.serpapi_api_key:
        raise SearchNotConfigured()
    client = serpapi.Client(api_key=settings.serpapi_api_key, timeout=timeout_s)
    # The client reads BASE_DOMAIN from self, so an instance attribute redirects it.
    client.BASE_DOMAIN = settings.serpapi_base_url.rstrip("/")
    return client


def search(
    question: str,
    *,
    settings: Settings,
    client: serpapi.Client | None = None,
    timeout_s: float = SEARCH_TIMEOUT_S,
) -> SearchResult:
    """Search the web for ``question`` and parse the organic results, answer box and
    knowledge graph.

    ``client`` defaults to :func:`make_client`; a client passed in is used as it is
    (its own key and base URL). Raises :class:`SearchNotConfigured` without a key and
    :class:`SearchError` on any failure (HTTP error, error JSON, quota, bad key,
    timeout, unreadable answer). A search that simply found nothing returns an empty
    :class:`SearchResult`.
    """
    if client is None:
        client = make_client(settings=settings, timeout_s=timeout_s)
    params = search_params(question, settings=settings)
    try:
        response = client.search(dict(params), timeout=timeout_s)
    except serpapi.TimeoutError as exc:
        raise SearchError(
            f"web search timed out after {timeout_s:g} s", code="search_timeout"
        ) from exc
    except serpapi.HTTPConnectionError as exc:
        # The message of a requests error holds the URL, and so the key: never echo it.
        raise SearchError("could not connect to the search service") from exc
    except serpapi.HTTPError as exc:
        raise _http_error(exc.status_code, exc.error) from exc
    except requests.RequestException as exc:
        raise SearchError(f"web search request failed ({type(exc).__name__})") from exc

    if not isinstance(response, serpapi.SerpResults):
        raise SearchError("the search service did not answer with JSON")
    return parse_results(response.as_dict(), query=str(params["q"]))


def _http_error(status: int, error: str | None) -> SearchError:
    detail = f": {error}" if error else ""
    if status in (401, 403):
        return SearchError(
            f"the search service refused the API key (HTTP {status}){detail}",
            code="search_auth",
            status=status,
        )
    if status == 429:
        return SearchError(
            f"the search quota is used up or rate-limited (HTTP 429){detail}",
            code="search_quota",
            status=status,
        )
    return SearchError(
        f"the search service answered HTTP {status}{detail}", code="search_failed", status=status
    )


def parse_results(data: dict[str, Any], *, query: str) -> SearchResult:
    """Turn SerpApi's JSON into a :class:`SearchResult`; raises :class:`SearchError` on
    ``{"error": ...}`` other than "no results"."""
    error = data.get("error")
    if isinstance(error, str) and error:
        if _NO_RESULTS_MARKER in error:
            return SearchResult(query=query)
        lowered = error.lower()
        code: SearchErrorCode = "search_failed"
        if "api key" in lowered or "api_key" in lowered:
            code = "search_auth"
        elif "run out of searches" in lowered or "limit" in lowered:
            code = "search_quota"
        raise SearchError(f"the search service reported an error: {error}", code=code)

    metadata = data.get("search_metadata")
    search_url = ""
    if isinstance(metadata, dict):
        search_url = _text(metadata.get("google_url"))

    hits: list[SearchHit] = []
    seen: set[str] = set()
    organic = data.get("organic_results")
    for rank, item in enumerate(organic if isinstance(organic, list) else [], start=1):
        if not isinstance(item, dict):
            continue
        url = _text(item.get("link"))
        if not url.startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        position = item.get("position")
        hits.append(
            SearchHit(
                position=position if isinstance(position, int) else rank,
                title=_text(item.get("title")) or url,
                url=url,
                snippet=_text(item.get("snippet")),
            )
        )

    facts: list[SearchFact] = []
    answer_box = data.get("answer_box")
    if isinstance(answer_box, dict) and (fact := _answer_box_fact(answer_box, search_url)):
        facts.append(fact)
    graph = data.get("knowledge_graph")
    if isinstance(graph, dict) and (fact := _knowledge_graph_fact(graph, search_url)):
        facts.append(fact)
    return SearchResult(query=query, hits=hits, facts=facts, search_url=search_url)


def _text(value: object) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _answer_box_fact(box: dict[str, Any], search_url: str) -> SearchFact | None:
    parts: list[str] = []
    for key in ("answer", "result", "snippet"):
        if value := _text(box.get(key)):
            parts.append(value)
    listed = box.get("list")
    if isinstance(listed, list):
        parts.extend(item for item in (_text(entry) for entry in listed) if item)
    if not parts:
        highlighted = box.get("snippet_highlighted_words")
        if isinstance(highlighted, list):
            parts.extend(item for item in (_text(entry) for entry in highlighted) if item)
    if date := _text(box.get("date")):
        parts.append(f"({date})")
    if not parts:
        return None
    title = _text(box.get("title")) or "Search answer"
    return SearchFact(
        kind="answer_box",
        title=title,
        url=_text(box.get("link")) or search_url,
        text=" ".join(_dedupe(parts)),
    )


# Keys of a knowledge-graph panel that are links, ids or media rather than facts.
_GRAPH_SKIP = ("title", "type", "description", "kgmid", "source", "image", "header_images")


def _knowledge_graph_fact(graph: dict[str, Any], search_url: str) -> SearchFact | None:
    title = _text(graph.get("title"))
    kind = _text(graph.get("type"))
    description = _text(graph.get("description"))
    head = f"{title} ({kind})" if title and kind else title or kind
    parts = [f"{head}: {description}" if head and description else head or description]
    attributes = 0
    for key, value in graph.items():
        if key in _GRAPH_SKIP or "link" in key or "serpapi" in key or key.endswith("_id"):
            continue
        text = _text(value)
        if not text or text.startswith(("http://", "https://")):
            continue
        parts.append(f"{key.replace('_', ' ').capitalize()}: {text}.")
        attributes += 1
        if attributes >= 12:
            break
    parts = [part for part in parts if part]
    if not parts or (not description and attributes == 0):
        return None
    source = graph.get("source")
    url = ""
    if isinstance(source, dict):
        url = _text(source.get("link"))
    url = url or _text(graph.get("website")) or search_url
    return SearchFact(
        kind="knowledge_graph", title=title or "Knowledge panel", url=url, text=" ".join(parts)
    )


def _dedupe(parts: list[str]) -> list[str]:
    seen: set[str] = set()
    kept: list[str] = []
    for part in parts:
        key = part.casefold()
        if key not in seen:
            seen.add(key)
            kept.append(part)
    return kept
