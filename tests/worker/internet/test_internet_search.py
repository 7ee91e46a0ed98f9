"""SerpApi search against a real local fake: parameters, parsing, and every failure."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from internet_fakes import TEST_API_KEY, FakeSerpApi

from shared.settings import Settings
from worker.internet.search import SearchError, SearchNotConfigured, parse_results, search

SERP = {
    "search_metadata": {"status": "Success", "google_url": "https://www.google.com/search?q=x"},
    "answer_box": {
        "type": "organic_result",
        "title": "Mount Everest height",
        "answer": "8,849 m",
        "snippet": "Mount Everest is 8,848.86 metres tall.",
        "link": "https://example.org/everest",
    },
    "knowledge_graph": {
        "title": "Mount Everest",
        "type": "Mountain",
        "description": "Earth's highest mountain above sea level.",
        "elevation": "8,849 m",
        "first_ascent": "29 May 1953",
        "kgmid": "/m/0blbk",
        "source": {"name": "Wikipedia", "link": "https://en.wikipedia.org/wiki/Mount_Everest"},
        "header_images": [{"image": "https://img.example/x.jpg"}],
        "serpapi_knowledge_graph_search_link": "https://serpapi.com/search.json?kgmid=x",
    },
    "organic_results": [
        {"position": 1, "title": "Everest", "link": "https://a.example/1", "snippet": "One."},
        {"position": 2, "title": "No link"},
        {"position": 3, "title": "Dup", "link": "https://a.example/1", "snippet": "Again."},
        {"position": 4, "title": "Four", "link": "https://b.example/4"},
        {"position": 5, "title": "FTP", "link": "ftp://c.example/5"},
    ],
}


def test_search_sends_serpapi_parameters_and_parses_results(
    serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    serpapi_fake.respond(SERP)
    settings = make_settings(
        search_engine="google", search_results=7, search_locale="fr", search_country="ca"
    )

    result = search("  how tall is   Everest? ", settings=settings)

    (seen,) = serpapi_fake.requests
    assert seen.path == "/search"
    assert {key: value[0] for key, value in seen.query.items()} == {
        "engine": "google",
        "q": "how tall is Everest?",
        "num": "7",
        "hl": "fr",
        "gl": "ca",
        "api_key": TEST_API_KEY,
    }
    assert [(hit.position, hit.url, hit.snippet) for hit in result.hits] == [
        (1, "https://a.example/1", "One."),
        (4, "https://b.example/4", ""),
    ]
    box, graph = result.facts
    assert box.kind == "answer_box"
    assert box.url == "https://example.org/everest"
    assert "8,849 m" in box.text and "8,848.86 metres" in box.text
    assert graph.kind == "knowledge_graph"
    assert graph.url == "https://en.wikipedia.org/wiki/Mount_Everest"
    assert "Mount Everest (Mountain): Earth's highest mountain" in graph.text
    assert "First ascent: 29 May 1953." in graph.text
    assert "kgmid" not in graph.text.lower() and "serpapi" not in graph.text.lower()


def test_search_result_round_trips_through_json() -> None:
    result = parse_results(SERP, query="q")
    assert type(result).from_json(result.to_json()) == result


@pytest.mark.parametrize(
    ("status", "body", "code", "words"),
    [
        (401, {"error": "Invalid API key. Your API key should be here: …"}, "search_auth", "key"),
        (429, {"error": "Your account has run out of searches."}, "search_quota", "run out"),
        (200, {"error": "Your account has run out of searches."}, "search_quota", "run out"),
        (200, {"error": "Unsupported `xyz` search engine."}, "search_failed", "Unsupported"),
        (500, {"error": "Internal error"}, "search_failed", "HTTP 500"),
        (503, {}, "search_failed", "HTTP 503"),
    ],
)
def test_search_errors_raise_search_error_with_reason(
    serpapi_fake: FakeSerpApi,
    make_settings: Callable[..., Settings],
    status: int,
    body: dict[str, str],
    code: str,
    words: str,
) -> None:
    serpapi_fake.respond(body, status=status)

    with pytest.raises(SearchError) as caught:
        search("anything", settings=make_settings())

    assert caught.value.code == code
    assert words in caught.value.reason
    assert TEST_API_KEY not in str(caught.value)
    if status != 200:
        assert caught.value.status == status


def test_search_no_results_is_empty_not_an_error(
    serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    serpapi_fake.respond({"error": "Google hasn't returned any results for this query."})
    result = search("zzqx", settings=make_settings())
    assert result.hits == [] and result.facts == []


def test_search_timeout(serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]) -> None:
    serpapi_fake.respond(SERP, delay_s=2.0)
    with pytest.raises(SearchError) as caught:
        search("slow", settings=make_settings(), timeout_s=0.3)
    assert caught.value.code == "search_timeout"
    assert "timed out" in caught.value.reason


def test_search_non_json_answer(
    serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    serpapi_fake.page("/search", "<html>down for maintenance</html>")
    with pytest.raises(SearchError, match="JSON"):
        search("x", settings=make_settings())


def test_search_unreachable_service_does_not_leak_the_key(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serpapi_base_url="http://127.0.0.1:9")  # discard port: closed
    with pytest.raises(SearchError) as caught:
        search("x", settings=settings)
    assert caught.value.code == "search_failed"
    assert TEST_API_KEY not in caught.value.reason


def test_search_without_key_is_unavailable(
    serpapi_fake: FakeSerpApi, make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(SearchNotConfigured):
        search("x", settings=make_settings(serpapi_api_key=""))
    assert serpapi_fake.searches == 0
