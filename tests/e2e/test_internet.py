"""Internet answers end to end: real uvicorn, real Celery worker, real Redis and model, a
local fake SerpApi and a local web server for the result pages."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx
import psycopg
import pytest
import redis

from shared.settings import Settings
from tests.conftest import make_settings
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.sse import Received, stream
from tests.redis_lease import lease_redis_db
from tests.worker.internet.internet_fakes import FakeSerpApi, LocalServer, Reply, SeenRequest

pytestmark = pytest.mark.e2e

API_KEY = "test-key"
QUESTION = "How tall is the Zorvath lighthouse?"
HEIGHT = "73 metres"
# A not-a-hang guard, not a speed goal: the worker's own deadline for a generation
# (GENERATION_TIME_LIMIT_S, left at its default here) plus the search and page fetches. A
# stream that has not ended by then is hung (keep-alive comments mean a read timeout alone
# would never fire). How fast answers come is bench/'s business.
STREAM_DEADLINE_S = Settings.model_fields["generation_time_limit_s"].default + 60.0
INTERNET_ENV = {
    "SERPAPI_API_KEY": API_KEY,
    "FETCH_ALLOW_PRIVATE": "true",  # the result pages are on 127.0.0.1
    "FETCH_TIMEOUT_S": "1",
    "FETCH_TOTAL_TIMEOUT_S": "3",
    "WEB_CACHE_TTL_S": "120",
}
CACHE_KEYS = "chatbot:web:*"  # the worker's cache namespace (worker.internet.cache)
# A Redis database of this module's own (queue, streams, cache): other e2e modules use 9,
# 10 and 12, and a stack running beside this one must not take its jobs.
INTERNET_REDIS = lease_redis_db()  # a database of this run alone


def article(title: str, *paragraphs: str) -> str:
    """A page with the usual clutter around its article."""
    body = "\n".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    return f"""<!doctype html><html><head><title>{title}</title></head><body>
<header><a href="/">Home</a> <a href="/coast">Coast</a> <a href="/login">Sign in</a></header>
<nav><ul><li><a href="/north">North</a></li><li><a href="/south">South</a></li></ul></nav>
<main><article><h1>{title}</h1>{body}</article></main>
<footer>© 2024 Coastal Notes. <a href="/privacy">Privacy</a></footer>
</body></html>"""


# A made-up lighthouse, so an answer that gives its height can only come from the sources.
HARBOUR = article(
    "Zorvath harbour: a visitor's guide",
    "Zorvath is a small fishing town on a rocky northern coast, known for its harbour, its "
    "smoked fish and the red and white lighthouse on the headland.",
    "The harbour has moorings for about forty boats and a ferry to the islands twice a day "
    "in summer.",
    "Visitors can walk to the lighthouse along the cliff path in about half an hour.",
)
LIGHTHOUSE = article(
    "The Zorvath lighthouse",
    "The Zorvath lighthouse stands on the headland north of the harbour.",
    f"The Zorvath lighthouse is {HEIGHT} tall, which makes it the tallest lighthouse on "
    "the coast; its light can be seen 40 kilometres out at sea.",
    "The tower was built in 1887 from local granite and was automated in 1979.",
)
SOUP = article(
    "Fish soup recipes from Zorvath",
    "Every family in Zorvath has its own fish soup, made with the morning's catch, leeks, "
    "potatoes and a splash of cream.",
    "Serve it hot with rye bread and butter.",
)


@dataclass(frozen=True)
class Result:
    """One organic search result the fake SerpApi lists."""

    title: str
    url: str
    snippet: str


class SerpApi(FakeSerpApi):
    """A fake SerpApi that answers each search with SerpApi's JSON shape (search_metadata,
    search_parameters, search_information, organic_results) for the query it was sent;
    ``failure`` replaces that with an error reply."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[Result] = []
        self.failure: Reply | None = None

    def _answer(self, seen: SeenRequest) -> Reply:
        if self.failure is not None:
            return self.failure
        return self.json(self.serp(seen))

    def serp(self, seen: SeenRequest) -> dict[str, Any]:
        q = seen.query.get("q", [""])[0]
        search_id = uuid.uuid4().hex[:24]
        data: dict[str, Any] = {
            "search_metadata": {
                "id": search_id,
                "status": "Success",
                "json_endpoint": f"https://serpapi.com/searches/{search_id}/{search_id}.json",
                "created_at": "2024-11-26 12:00:00 UTC",
                "processed_at": "2024-11-26 12:00:00 UTC",
                "google_url": f"https://www.google.com/search?q={quote_plus(q)}&hl=en&gl=us",
                "raw_html_file": f"https://serpapi.com/searches/{search_id}/{search_id}.html",
                "total_time_taken": 0.42,
            },
            "search_parameters": {
                "engine": seen.query.get("engine", ["google"])[0],
                "q": q,
                "google_domain": "google.com",
                "hl": seen.query.get("hl", ["en"])[0],
                "gl": seen.query.get("gl", ["us"])[0],
                "num": seen.query.get("num", ["10"])[0],
                "device": "desktop",
            },
            "search_information": {
                "organic_results_state": "Results for exact spelling",
                "query_displayed": q,
                "total_results": 48200,
                "time_taken_displayed": 0.31,
            },
            "organic_results": [
                {
                    "position": position,
                    "title": result.title,
                    "link": result.url,
                    "redirect_link": f"https://www.google.com/url?q={quote_plus(result.url)}",
                    "displayed_link": urlsplit(result.url).netloc,
                    "snippet": result.snippet,
                    "snippet_highlighted_words": ["Zorvath"],
                    "source": "Coastal Notes",
                }
                for position, result in enumerate(self.results, start=1)
            ],
        }
        return data

    def searches_for(self, question: str) -> int:
        """How many searches for ``question`` reached the server."""
        return sum(1 for seen in self.requests if seen.query.get("q") == [question])


def reset(server: LocalServer) -> None:
    """Forget what ``server`` was asked (under its lock: its handler threads count)."""
    with server._lock:
        server.requests.clear()
        server.hits.clear()


@pytest.fixture(scope="module")
def pages() -> Iterator[LocalServer]:
    """The web the worker reads: a local server on 127.0.0.1."""
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def serpapi() -> Iterator[SerpApi]:
    server = SerpApi()
    yield server
    server.close()


@pytest.fixture(scope="module")
def module_stack(
    stack_env: dict[str, str], serpapi: SerpApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A web server and a worker that search the fake SerpApi and may read local pages."""
    env = {
        **stack_env,
        **INTERNET_ENV,
        "REDIS_URL": INTERNET_REDIS,
        "SERPAPI_BASE_URL": serpapi.url(""),
    }
    with running_stack(env, tmp_path_factory.mktemp("internet-logs")) as stack:
        yield stack


@pytest.fixture
def stack(module_stack: Stack) -> Stack:
    """The module's stack with its normal worker running (the SSRF test swaps it out)."""
    if "worker" not in module_stack.processes:
        for name in [n for n in module_stack.processes if n.startswith("worker")]:
            module_stack.stop(name)
        module_stack.start_worker()
    return module_stack


@pytest.fixture(autouse=True)
def fresh_web(pages: LocalServer, serpapi: SerpApi) -> Iterator[None]:
    """Each test starts with its own pages and results, zero counts and an empty cache."""
    pages.routes.clear()
    serpapi.results, serpapi.failure = [], None
    reset(pages)
    reset(serpapi)
    client = redis.Redis.from_url(INTERNET_REDIS)

    def forget_cache() -> None:
        if keys := list(client.scan_iter(match=CACHE_KEYS)):
            client.delete(*keys)

    try:
        forget_cache()
        yield
        forget_cache()
    finally:
        client.close()


def new_chat(base: str, question: str = QUESTION) -> str:
    chat_id = httpx.post(f"{base}/chats/create", json={"name": "internet"}).json()["id"]
    response = httpx.post(
        f"{base}/conversations/create",
        json={"chat_id": chat_id, "role": "Human", "message": question},
    )
    assert response.status_code == 201, response.text
    return str(chat_id)


def saved_messages(base: str, chat_id: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base}/chats/{chat_id}/conversations").json()  # type: ignore[no-any-return]


def ask(base: str, chat_id: str, *, deadline_s: float = STREAM_DEADLINE_S) -> Received:
    """Stream the internet answer for ``chat_id``; fail if it has not ended by the deadline
    (keep-alive comments mean a read timeout alone would never fire on a hung stream)."""
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            outcome["got"] = stream(
                base, f"/conversations/inference_internet/{chat_id}", timeout=10
            )
        except BaseException as exc:  # handed to the test thread below
            outcome["error"] = exc

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(deadline_s)
    if reader.is_alive():
        raise AssertionError(f"the stream of chat {chat_id} did not end in {deadline_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    got: Received = outcome["got"]
    return got


def sources_of(got: Received) -> dict[str, Any]:
    events = got.named("sources")
    assert len(events) == 1, [e.event for e in got.events]
    payload: dict[str, Any] = json.loads(events[0].data)
    return payload


def assert_answered(got: Received) -> dict[str, Any]:
    """The stream is generation, sources, tokens, done; returns the ``done`` payload."""
    assert got.status == 200, got.body
    names = [e.event for e in got.events]
    assert names[:2] == ["queue", "generation"] and names[-1] == "done", names
    assert names.count("sources") == 1 and "error" not in names
    assert "message" in names, "no tokens were streamed"
    assert names.index("sources") < names.index("message")  # sources before the first token
    done = got.done
    assert done is not None and done["status"] == "done"
    assert done["message"]["message"] == got.text
    assert done["message"]["sources"] == sources_of(got)["sources"]
    return done


def assert_saved_with_sources(base: str, chat_id: str, got: Received) -> None:
    saved = saved_messages(base, chat_id)
    assert [m["role"] for m in saved] == ["Human", "Assistant"]
    assert saved[-1]["message"] == got.text
    assert saved[-1]["generation_id"] == got.generation_id
    assert saved[-1]["sources"] == sources_of(got)["sources"]


def generation_row(postgres_url: str, generation_id: str) -> tuple[str, str | None, str | None]:
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT status, error_code, error FROM generations WHERE id = %s",
            (uuid.UUID(generation_id),),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def serve_three_pages(pages: LocalServer, serpapi: SerpApi) -> dict[str, str]:
    """The harbour guide ranks first at the search engine; the lighthouse page holds the
    answer. Returns the URLs by name."""
    urls = {
        "harbour": pages.page("/harbour", HARBOUR),
        "lighthouse": pages.page("/lighthouse", LIGHTHOUSE),
        "soup": pages.page("/soup", SOUP),
    }
    serpapi.results = [
        Result("Zorvath harbour guide", urls["harbour"], "A visitor's guide to Zorvath."),
        Result("The Zorvath lighthouse", urls["lighthouse"], "The red and white tower..."),
        Result("Zorvath fish soup", urls["soup"], "Recipes from the fishing town."),
    ]
    return urls


def test_sources_come_first_and_are_saved_with_the_answer(
    stack: Stack, pages: LocalServer, serpapi: SerpApi
) -> None:
    base = stack.url()
    urls = serve_three_pages(pages, serpapi)
    chat_id = new_chat(base)

    got = ask(base, chat_id)

    done = assert_answered(got)
    event = sources_of(got)
    assert event["degraded"] is False and event["notes"] == []
    sources = event["sources"]
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1))
    assert {s["url"] for s in sources} <= set(urls.values())
    assert sources[0]["url"] == urls["lighthouse"]  # the page with the answer ranks first
    assert sources[0]["title"] == "The Zorvath lighthouse"
    assert HEIGHT.split()[0] in got.text, got.text  # the answer used the page
    assert_saved_with_sources(base, chat_id, got)
    assert done["generation_id"] == got.generation_id
    # The worker spoke SerpApi's protocol to the fake: one GET with the key and question.
    [search] = serpapi.requests
    assert search.path == "/search"
    assert search.query["api_key"] == [API_KEY]
    assert search.query["q"] == [QUESTION] and search.query["engine"] == ["google"]
    assert pages.hits == {"/harbour": 1, "/lighthouse": 1, "/soup": 1}


def test_same_question_twice_searches_and_reads_each_page_once(
    stack: Stack, pages: LocalServer, serpapi: SerpApi
) -> None:
    base = stack.url()
    serve_three_pages(pages, serpapi)

    first = ask(base, new_chat(base))
    second_chat = new_chat(base)
    second = ask(base, second_chat)

    assert_answered(first)
    assert_answered(second)
    assert sources_of(second) == sources_of(first)
    assert serpapi.searches == serpapi.searches_for(QUESTION) == 1
    assert pages.hits == {"/harbour": 1, "/lighthouse": 1, "/soup": 1}
    assert_saved_with_sources(base, second_chat, second)
    client = redis.Redis.from_url(INTERNET_REDIS)
    try:
        keys = [key.decode() for key in client.scan_iter(match=CACHE_KEYS)]
        assert all(0 < client.ttl(key) <= 120 for key in keys)
    finally:
        client.close()
    assert sum(":search:" in key for key in keys) == 1
    assert sum(":page:" in key for key in keys) == 3


@pytest.mark.parametrize(
    ("status", "serpapi_error", "code"),
    [
        (
            401,
            "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key",
            "search_auth",
        ),
        (429, "Your account has run out of searches.", "search_quota"),
    ],
    ids=["bad-key", "quota"],
)
def test_search_failure_is_an_error_event_and_no_answer(
    stack: Stack,
    pages: LocalServer,
    serpapi: SerpApi,
    postgres_url: str,
    status: int,
    serpapi_error: str,
    code: str,
) -> None:
    base = stack.url()
    serve_three_pages(pages, serpapi)
    serpapi.failure = serpapi.json({"error": serpapi_error}, status=status)
    chat_id = new_chat(base)

    got = ask(base, chat_id)

    assert got.status == 200
    # The web tier's queue position, the worker's "running" generation event, the error.
    assert [e.event for e in got.events] == ["queue", "generation", "error"]
    error = json.loads(got.events[-1].data)["error"]
    assert error["code"] == code
    assert serpapi_error in error["message"] and f"HTTP {status}" in error["message"]
    assert API_KEY not in error["message"]
    assert generation_row(postgres_url, got.generation_id) == ("error", code, error["message"])
    assert [m["role"] for m in saved_messages(base, chat_id)] == ["Human"]
    assert serpapi.searches == 1
    assert sum(pages.hits.values()) == 0


def test_pages_that_fail_are_skipped_and_the_rest_answers(
    stack: Stack, pages: LocalServer, serpapi: SerpApi
) -> None:
    base = stack.url()
    good = pages.page("/lighthouse", LIGHTHOUSE)
    slow = pages.page("/slow", HARBOUR, delay_s=3)  # the worker gives up after 1 s
    pdf = pages.page("/tower.pdf", "%PDF-1.4 not html", content_type="application/pdf")
    gone = pages.url("/gone")  # 404
    serpapi.results = [
        Result("Zorvath harbour guide", slow, "A visitor's guide to Zorvath."),
        Result("Lighthouse plans (PDF)", pdf, "Drawings of the tower."),
        Result("Old lighthouse page", gone, "This page has moved."),
        Result("The Zorvath lighthouse", good, "The red and white tower..."),
    ]
    chat_id = new_chat(base)

    got = ask(base, chat_id)

    assert_answered(got)
    event = sources_of(got)
    assert event["degraded"] is False
    assert event["sources"][0]["url"] == good
    # A page that failed may only be cited by its search snippet, never by its text.
    for source in event["sources"][1:]:
        assert source["url"] in {slow, pdf, gone}
        assert source["snippet"] in {r.snippet for r in serpapi.results}
    [note] = event["notes"]
    assert "Could not read 3 of 4 pages" in note
    assert f"{slow} (timed out after 1 s)" in note
    assert f"{pdf} (unsupported content type" in note
    assert f"{gone} (HTTP 404)" in note
    assert HEIGHT.split()[0] in got.text, got.text
    assert_saved_with_sources(base, chat_id, got)
    assert pages.hits == {"/lighthouse": 1, "/slow": 1, "/tower.pdf": 1, "/gone": 1}


def test_no_page_readable_answers_from_snippets(
    stack: Stack, pages: LocalServer, serpapi: SerpApi
) -> None:
    base = stack.url()
    pdf = pages.page("/tower.pdf", "%PDF-1.4 not html", content_type="application/pdf")
    empty = pages.page("/empty", "<html><body><script>app()</script></body></html>")
    serpapi.results = [
        Result(
            "The Zorvath lighthouse",
            pages.url("/gone"),
            f"The Zorvath lighthouse is {HEIGHT} tall, the tallest on the coast.",
        ),
        Result("Lighthouse plans (PDF)", pdf, "Drawings of the Zorvath lighthouse tower."),
        Result("Zorvath app", empty, "Plan your visit to Zorvath."),
    ]
    chat_id = new_chat(base)

    got = ask(base, chat_id)

    assert_answered(got)
    event = sources_of(got)
    assert event["degraded"] is True
    sources = event["sources"]
    assert sources and sources[0]["url"] == pages.url("/gone")
    by_url = {r.url: r.snippet for r in serpapi.results}
    assert all(s["snippet"] == by_url[s["url"]] for s in sources)  # snippets, not pages
    assert any("answering from search snippets" in note for note in event["notes"])
    assert got.text.strip()
    assert_saved_with_sources(base, chat_id, got)


def test_search_with_no_results_still_ends_with_done(stack: Stack, serpapi: SerpApi) -> None:
    base = stack.url()
    serpapi.failure = serpapi.json(
        {
            "search_metadata": {"status": "Success"},
            "error": "Google hasn't returned any results for this query.",
        }
    )
    chat_id = new_chat(base, "Zorvath qqxxyy lighthouse?")

    got = ask(base, chat_id)

    assert_answered(got)
    event = sources_of(got)
    assert event == {
        "sources": [],
        "degraded": True,
        "notes": ["The web search found nothing for this question."],
    }


async def test_no_search_key_is_503_before_streaming(postgres_url: str, tmp_path: Path) -> None:
    from web.app import create_app

    app = create_app(make_settings(tmp_path, database_url=postgres_url, serpapi_api_key=""))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            chat_id = (await client.post("/chats/create", json={"name": "x"})).json()["id"]
            created = await client.post(
                "/conversations/create",
                json={"chat_id": chat_id, "role": "Human", "message": QUESTION},
            )
            assert created.status_code == 201
            response = await client.get(f"/conversations/inference_internet/{chat_id}")
            assert response.status_code == 503
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["error"]["code"] == "search_unavailable"
            assert "SERPAPI_API_KEY" in response.json()["error"]["message"]
            listed = (await client.get(f"/chats/{chat_id}/conversations")).json()
            assert [m["role"] for m in listed] == ["Human"]


def test_ssrf_guard_refuses_local_pages_in_the_real_worker(
    stack: Stack, pages: LocalServer, serpapi: SerpApi
) -> None:
    # The guard is a per-process setting: swap the worker for one without the opt-out
    # (the `stack` fixture puts the normal one back for any test that runs after this).
    stack.stop("worker")
    stack.start_worker("worker-guarded", FETCH_ALLOW_PRIVATE="false")
    base = stack.url()
    loopback = pages.page("/lighthouse", LIGHTHOUSE)
    by_name = f"http://localhost:{pages.port}/lighthouse"
    metadata = "http://169.254.169.254/latest/meta-data/"
    serpapi.results = [
        Result("The Zorvath lighthouse", loopback, f"The Zorvath lighthouse is {HEIGHT} tall."),
        Result("Lighthouse (local name)", by_name, "The tower on the headland."),
        Result("Cloud metadata", metadata, "Instance metadata."),
    ]
    chat_id = new_chat(base)

    got = ask(base, chat_id)

    assert_answered(got)
    event = sources_of(got)
    assert event["degraded"] is True
    note = event["notes"][0]
    assert "Could not read 3 of 3 pages" in note
    for url in (loopback, by_name, metadata):
        assert f"{url} (refused: " in note
    assert "non-public address" in note
    assert sum(pages.hits.values()) == 0  # nothing reached the local server
    assert {s["url"] for s in event["sources"]} <= {loopback, by_name, metadata}
